//! Virtual time. The driver owns the clock; the core only sees values.

use serde::{Deserialize, Serialize};
use std::ops::{Add, Sub};
pub use std::time::Duration;

/// A point in time, in microseconds since an epoch chosen by the driver
/// (the UNIX epoch for `net`, through a monotonic clock; zero for the simulator).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Instant(pub u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);
    /// Far enough in the future to mean "no deadline".
    pub const NEVER: Instant = Instant(u64::MAX);

    pub fn micros(self) -> u64 {
        self.0
    }

    pub fn saturating_sub(self, earlier: Instant) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(
            self.0
                .saturating_add(d.as_micros().min(u64::MAX as u128) as u64),
        )
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_sub(earlier)
    }
}
