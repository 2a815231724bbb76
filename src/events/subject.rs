//! Event subjects: `PREFIX.<type-slug>.<outcome>`, e.g.
//! `rotator.events.postgres-credentials.failed`.
//!
//! The type and the outcome are single tokens, so wildcards select by either:
//! `PREFIX.*.failed` is every failure, `PREFIX.ldap-password.*` every LDAP event, `PREFIX.>`
//! everything (and is the stream's subject filter).

use super::model::Outcome;
use crate::proto::RotationType;

/// The default subject prefix.
pub const DEFAULT_PREFIX: &str = "rotator.events";

/// The token of a type: its slug, or `unspecified`.
pub fn type_token(rotation_type: RotationType) -> &'static str {
    rotation_type.slug().unwrap_or("unspecified")
}

/// The subject below the prefix: `<type-slug>.<outcome>`. This is what the outbox stores.
pub fn relative(rotation_type: RotationType, outcome: Outcome) -> String {
    format!("{}.{}", type_token(rotation_type), outcome.as_str())
}

/// The full subject: `PREFIX.<relative>`.
pub fn full(prefix: &str, relative: &str) -> String {
    format!("{prefix}.{relative}")
}

/// The stream's subject filter: every event under the prefix.
pub fn stream_filter(prefix: &str) -> String {
    format!("{prefix}.>")
}

/// A consumer filter for one type and/or outcome; `*` where not given.
pub fn filter(
    prefix: &str,
    rotation_type: Option<RotationType>,
    outcome: Option<Outcome>,
) -> String {
    format!(
        "{prefix}.{}.{}",
        rotation_type.map_or("*", type_token),
        outcome.map_or("*", Outcome::as_str)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_put_type_and_outcome_in_their_own_tokens() {
        let rel = relative(RotationType::AwsIamUserSecret, Outcome::Failed);
        assert_eq!(rel, "aws-iam-user-secret.failed");
        assert_eq!(
            full(DEFAULT_PREFIX, &rel),
            "rotator.events.aws-iam-user-secret.failed"
        );
        assert_eq!(
            filter("p", None, Some(Outcome::Failed)),
            "p.*.failed",
            "PREFIX.*.failed catches every failure"
        );
        assert_eq!(
            filter("p", Some(RotationType::LdapPassword), None),
            "p.ldap-password.*"
        );
        assert_eq!(stream_filter("p.q"), "p.q.>");
    }
}
