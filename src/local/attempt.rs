//! The attempt state machine of a local rotation (DESIGN §5), as pure decisions: given where an
//! attempt stands and what the last action returned, what to do next. The engine performs the
//! action, records the transition under the attempt's fencing token, and asks again.
//!
//! ```text
//! PREPARED ──apply ok──▶ APPLIED ──verify ok──▶ VERIFIED ──commit──▶ COMMITTED
//!    │                      │ verify failed: apply the same credential again (applies are idempotent)
//!    │ apply rejected (policy): new candidate, back to PREPARED
//!    └ transient failures: retry with backoff until the budget is spent, then FAILED
//! ```

pub use crate::rotation::AttemptState;

/// How the last action failed, as the state machine needs to know it. A success is no
/// result: the engine records the new state and asks again with `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionResult {
    /// It failed in a way that may pass on retry (network, timeout, 5xx).
    Transient,
    /// The target refused this candidate (password policy): a new one may pass.
    CandidateRejected,
    /// It failed in a way no retry fixes (auth, permission, missing user).
    Permanent,
}

/// The next action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Set the candidate on the target.
    Apply,
    /// Log in with the candidate on a fresh connection.
    Verify,
    /// Commit in one transaction: slot, active index, timestamps, status, outbox event.
    Commit,
    /// Generate a new candidate, store it (still PREPARED), then apply it.
    Regenerate,
    /// Wait (backoff), then run this action again.
    RetryAfterBackoff(Retry),
    /// Record the failure (status, redacted message, outbox event); the attempt ends.
    Fail,
    /// Nothing to do: the attempt is final.
    Done,
}

/// The action to retry after a backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Apply again.
    Apply,
    /// Verify again.
    Verify,
}

/// How many tries a run allows, counted over all actions of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Transient failures allowed before giving up.
    pub transient_retries: u32,
    /// New candidates allowed after policy rejections.
    pub regenerations: u32,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            transient_retries: 5,
            regenerations: 2,
        }
    }
}

/// Counts spent so far in this attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Spent {
    /// Transient failures seen.
    pub transient: u32,
    /// Candidates regenerated.
    pub regenerations: u32,
}

/// The next action for an attempt in `state`, given how the last action failed (`None` after a
/// success, which the engine has recorded as `state`, and on recovery, when nothing is known).
pub fn next(state: AttemptState, last: Option<ActionResult>, spent: Spent, budget: Budget) -> Next {
    use ActionResult as R;
    use AttemptState as S;
    let transient = |retry| {
        if spent.transient < budget.transient_retries {
            Next::RetryAfterBackoff(retry)
        } else {
            Next::Fail
        }
    };
    match (state, last) {
        (S::Committed | S::Failed, _) => Next::Done,
        // Recovery: the last effect is unknown. A prepared candidate may or may not be on the
        // target; applies are idempotent, so apply. An applied one: verify first, never guess.
        (S::Prepared, None) => Next::Apply,
        (S::Applied, None) => Next::Verify,
        (S::Verified, None) => Next::Commit,
        (S::Prepared, Some(R::Transient)) => transient(Retry::Apply),
        (S::Prepared, Some(R::CandidateRejected)) => {
            if spent.regenerations < budget.regenerations {
                Next::Regenerate
            } else {
                Next::Fail
            }
        }
        (S::Prepared, Some(R::Permanent)) => Next::Fail,
        (S::Applied, Some(R::Transient)) => transient(Retry::Verify),
        // The target does not take the candidate although apply said yes: apply it again.
        (S::Applied, Some(R::CandidateRejected | R::Permanent)) => transient(Retry::Apply),
        (S::Verified, Some(_)) => Next::Commit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Budget = Budget {
        transient_retries: 2,
        regenerations: 1,
    };

    #[test]
    fn the_happy_path_goes_apply_verify_commit() {
        assert_eq!(
            next(AttemptState::Prepared, None, Spent::default(), B),
            Next::Apply
        );
        // A success is recorded as the next state, then the machine is asked again.
        assert_eq!(
            next(AttemptState::Applied, None, Spent::default(), B),
            Next::Verify
        );
        assert_eq!(
            next(AttemptState::Verified, None, Spent::default(), B),
            Next::Commit
        );
        assert_eq!(
            next(AttemptState::Committed, None, Spent::default(), B),
            Next::Done
        );
    }

    #[test]
    fn recovery_verifies_before_it_guesses() {
        assert_eq!(
            next(AttemptState::Applied, None, Spent::default(), B),
            Next::Verify
        );
        assert_eq!(
            next(AttemptState::Verified, None, Spent::default(), B),
            Next::Commit
        );
    }

    #[test]
    fn budgets_end_in_failure_and_permanent_errors_fail_fast() {
        let spent = Spent {
            transient: 2,
            regenerations: 1,
        };
        assert_eq!(
            next(
                AttemptState::Prepared,
                Some(ActionResult::Transient),
                Spent::default(),
                B
            ),
            Next::RetryAfterBackoff(Retry::Apply)
        );
        assert_eq!(
            next(
                AttemptState::Prepared,
                Some(ActionResult::Transient),
                spent,
                B
            ),
            Next::Fail
        );
        assert_eq!(
            next(
                AttemptState::Prepared,
                Some(ActionResult::CandidateRejected),
                Spent::default(),
                B
            ),
            Next::Regenerate
        );
        assert_eq!(
            next(
                AttemptState::Prepared,
                Some(ActionResult::CandidateRejected),
                spent,
                B
            ),
            Next::Fail
        );
        assert_eq!(
            next(
                AttemptState::Prepared,
                Some(ActionResult::Permanent),
                Spent::default(),
                B
            ),
            Next::Fail
        );
    }

    #[test]
    fn a_failed_verify_reapplies_the_same_candidate() {
        assert_eq!(
            next(
                AttemptState::Applied,
                Some(ActionResult::Permanent),
                Spent::default(),
                B
            ),
            Next::RetryAfterBackoff(Retry::Apply)
        );
    }
}
