//! Each replica host's own clock: it runs at a rate within the configured drift bound of
//! real (simulated) time, from its own offset. A replica only ever sees its host's clock, as
//! the `now` of its inputs and ticks, and its timers are set in that clock.

use chat_core::time::Instant;
use rand::rngs::SmallRng;
use rand::Rng;

const MILLION: i128 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clock {
    /// The reading at real time zero.
    offset_us: u64,
    /// How fast it runs, in millionths: it reads `rate_ppm` µs per million real µs.
    rate_ppm: u32,
}

impl Clock {
    /// A clock whose rate is uniform within `max_drift` (a fraction, below 1) of real time,
    /// with an offset of up to about 17 minutes.
    pub fn draw(rng: &mut SmallRng, max_drift: f64) -> Clock {
        assert!(
            (0.0..1.0).contains(&max_drift),
            "a clock drift bound is a fraction in [0, 1)"
        );
        let max_ppm = (max_drift * 1e6).round() as i64;
        let rate_ppm = (1_000_000 + rng.gen_range(-max_ppm..=max_ppm)) as u32;
        Clock {
            offset_us: rng.gen_range(0..1_000_000_000),
            rate_ppm,
        }
    }

    /// The clock's reading at real time `real`: monotonic in `real`.
    pub fn read(&self, real: Instant) -> Instant {
        let elapsed = i128::from(real.0) * i128::from(self.rate_ppm) / MILLION;
        Instant(
            self.offset_us
                .saturating_add(elapsed.min(u64::MAX.into()) as u64),
        )
    }

    /// The earliest real time at which the clock reads `local` or later.
    pub fn real_time(&self, local: Instant) -> Instant {
        if local == Instant::NEVER {
            return Instant::NEVER;
        }
        let ahead = i128::from(local.0.saturating_sub(self.offset_us));
        let rate = i128::from(self.rate_ppm);
        // `read` floors, so the smallest t with t * rate / MILLION >= ahead is this ceiling.
        let real = (ahead * MILLION + rate - 1) / rate;
        Instant(real.min(u64::MAX.into()) as u64)
    }

    /// How far this clock runs from real time, in millionths (for traces).
    pub fn drift_ppm(&self) -> i64 {
        i64::from(self.rate_ppm) - 1_000_000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn timers_fire_at_the_first_real_instant_the_clock_reaches_them() {
        let mut rng = SmallRng::seed_from_u64(3);
        for _ in 0..200 {
            let clock = Clock::draw(&mut rng, 0.01);
            assert!(clock.drift_ppm().abs() <= 10_000);
            for local in [
                0,
                clock.offset_us,
                clock.offset_us + 1,
                clock.offset_us + 12_345_677,
            ] {
                let local = Instant(local);
                let real = clock.real_time(local);
                assert!(clock.read(real) >= local);
                assert!(real == Instant::ZERO || clock.read(Instant(real.0 - 1)) < local);
            }
        }
        assert_eq!(
            Clock::draw(&mut rng, 0.01).real_time(Instant::NEVER),
            Instant::NEVER
        );
    }

    #[test]
    fn rates_stay_within_the_bound_and_differ() {
        let mut rng = SmallRng::seed_from_u64(4);
        let clocks: Vec<Clock> = (0..100).map(|_| Clock::draw(&mut rng, 0.01)).collect();
        let hour = Instant(3_600_000_000);
        for clock in &clocks {
            let ran = clock.read(hour).0 - clock.read(Instant::ZERO).0;
            assert!((3_564_000_000..=3_636_000_000).contains(&ran), "{ran}");
        }
        assert!(clocks.iter().any(|c| c.drift_ppm() > 5_000));
        assert!(clocks.iter().any(|c| c.drift_ppm() < -5_000));
        let exact = Clock::draw(&mut rng, 0.0);
        assert_eq!(exact.read(hour).0 - exact.read(Instant::ZERO).0, hour.0);
    }
}
