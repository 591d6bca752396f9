//! The run's trace: every event, printed when verbose and hashed for the determinism check.

use chat_core::time::Instant;
use std::fmt::{self, Write as _};
use std::hash::{DefaultHasher, Hasher};

#[derive(Debug)]
pub struct Trace {
    verbose: bool,
    /// `DefaultHasher::new()` has fixed keys: equal traces give equal digests.
    hasher: Option<DefaultHasher>,
}

/// Feeds formatted text into the hasher without building a string.
struct HashWriter<'a>(&'a mut DefaultHasher);

impl fmt::Write for HashWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

impl Trace {
    pub fn new(verbose: bool, digest: bool) -> Trace {
        Trace {
            verbose,
            hasher: digest.then(DefaultHasher::new),
        }
    }

    /// Whether recording does anything (callers skip building expensive arguments if not).
    pub fn on(&self) -> bool {
        self.verbose || self.hasher.is_some()
    }

    pub fn record(&mut self, now: Instant, what: fmt::Arguments) {
        if let Some(hasher) = self.hasher.as_mut() {
            hasher.write_u64(now.micros());
            let _ = HashWriter(hasher).write_fmt(what);
        }
        if self.verbose {
            eprintln!("{:>10.3} ms  {what}", now.micros() as f64 / 1e3);
        }
    }

    pub fn digest(&self) -> Option<u64> {
        self.hasher.as_ref().map(Hasher::finish)
    }
}
