//! When a rotation is next due: Infisical's `calculateNextRotationAt` (lifecycle §7.2), so local
//! rotations schedule exactly as forwarded ones do.

use chrono::{DateTime, Duration, NaiveTime, Utc};

/// The inputs of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Whether auto-rotation is on; off means no next rotation.
    pub auto_rotation: bool,
    /// Days between rotations (at least 1).
    pub interval_days: u32,
    /// UTC time of day, hours 0–23.
    pub rotate_at_hours: u32,
    /// UTC time of day, minutes 0–59.
    pub rotate_at_minutes: u32,
}

impl Schedule {
    fn time_of_day(&self) -> NaiveTime {
        NaiveTime::from_hms_opt(
            self.rotate_at_hours.min(23),
            self.rotate_at_minutes.min(59),
            0,
        )
        .unwrap_or_default()
    }

    /// The next rotation after a success at `last_rotated_at`.
    ///
    /// The day of the last rotation at `rotateAtUtc`, plus the interval; a manual rotation at or
    /// after that time of day adds one more day so a full interval always passes.
    pub fn after_success(
        &self,
        last_rotated_at: DateTime<Utc>,
        manual: bool,
    ) -> Option<DateTime<Utc>> {
        if !self.auto_rotation {
            return None;
        }
        let anchor = last_rotated_at
            .date_naive()
            .and_time(self.time_of_day())
            .and_utc();
        let mut next = anchor + Duration::days(i64::from(self.interval_days.max(1)));
        if manual && last_rotated_at >= anchor {
            next += Duration::days(1);
        }
        Some(next)
    }

    /// The next rotation after a final failure at `now`: the next UTC day at `rotateAtUtc`.
    pub fn after_failure(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if !self.auto_rotation {
            return None;
        }
        Some(
            (now.date_naive() + Duration::days(1))
                .and_time(self.time_of_day())
                .and_utc(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().expect("RFC 3339")
    }

    const WEEKLY_AT_TWO: Schedule = Schedule {
        auto_rotation: true,
        interval_days: 7,
        rotate_at_hours: 2,
        rotate_at_minutes: 0,
    };

    #[test]
    fn the_specs_examples_hold() {
        assert_eq!(
            WEEKLY_AT_TWO.after_success(at("2025-01-10T05:00:00Z"), true),
            Some(at("2025-01-18T02:00:00Z"))
        );
        assert_eq!(
            WEEKLY_AT_TWO.after_success(at("2025-01-10T02:00:03Z"), false),
            Some(at("2025-01-17T02:00:00Z"))
        );
    }

    #[test]
    fn a_manual_rotation_before_the_time_of_day_adds_no_extra_day() {
        assert_eq!(
            WEEKLY_AT_TWO.after_success(at("2025-01-10T01:59:59Z"), true),
            Some(at("2025-01-17T02:00:00Z"))
        );
    }

    #[test]
    fn failures_retry_the_next_day_and_disabled_rotations_never_come_due() {
        assert_eq!(
            WEEKLY_AT_TWO.after_failure(at("2025-01-10T23:30:00Z")),
            Some(at("2025-01-11T02:00:00Z"))
        );
        let off = Schedule {
            auto_rotation: false,
            ..WEEKLY_AT_TWO
        };
        assert_eq!(off.after_success(at("2025-01-10T05:00:00Z"), true), None);
        assert_eq!(off.after_failure(at("2025-01-10T05:00:00Z")), None);
    }
}
