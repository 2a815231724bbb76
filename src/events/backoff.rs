//! Jittered exponential backoff for the relay while NATS is unreachable.

use std::time::Duration;

use rand::Rng as _;

/// A backoff whose bounds were rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backoff needs 0 < min <= max (got min {min:?}, max {max:?})")]
pub struct InvalidBackoff {
    /// The rejected minimum.
    pub min: Duration,
    /// The rejected maximum.
    pub max: Duration,
}

/// Delays that double from `min` up to `max`, each drawn uniformly from the upper half of its
/// step ("equal jitter"), so many relays restarting together do not retry in lock-step, yet no
/// delay is shorter than half its step.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

// === impl Backoff ===

impl Backoff {
    /// A backoff from `min` to `max`.
    ///
    /// # Errors
    ///
    /// [`InvalidBackoff`] unless `0 < min <= max`.
    pub fn new(min: Duration, max: Duration) -> Result<Self, InvalidBackoff> {
        if min.is_zero() || min > max {
            return Err(InvalidBackoff { min, max });
        }
        Ok(Self {
            min,
            max,
            failures: 0,
        })
    }

    /// The same backoff as if `failures` tries had already failed (state kept elsewhere, e.g.
    /// in a store row).
    #[must_use]
    pub fn after(mut self, failures: u32) -> Self {
        self.failures = failures;
        self
    }

    /// The delay before the next try, counting one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let step = self
            .min
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = step / 2;
        half + rand::rng().random_range(Duration::ZERO..=step - half)
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_validated() {
        let ms = Duration::from_millis;
        assert!(Backoff::new(Duration::ZERO, ms(1)).is_err());
        assert!(Backoff::new(ms(2), ms(1)).is_err());
        assert!(Backoff::new(ms(1), ms(1)).is_ok());
    }

    #[test]
    fn delays_grow_stay_within_their_step_and_cap_at_max() {
        let ms = Duration::from_millis;
        for _ in 0..200 {
            let mut backoff = Backoff::new(ms(100), ms(1000)).expect("valid");
            let steps = [100, 200, 400, 800, 1000, 1000, 1000];
            for step in steps {
                let d = backoff.next_delay();
                assert!(d >= ms(step) / 2 && d <= ms(step), "{d:?} for step {step}");
            }
            assert_eq!(backoff.failures(), 7);
            backoff.reset();
            assert!(backoff.next_delay() <= ms(100));
        }
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff =
            Backoff::new(Duration::from_secs(1), Duration::from_secs(30)).expect("valid");
        for _ in 0..10_000 {
            assert!(backoff.next_delay() <= Duration::from_secs(30));
        }
    }
}
