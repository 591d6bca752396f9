//! A shutdown request that can come from any thread (a signal, a test) and wakes the loop.

use mio::Waker;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing::info;

/// Cloneable: every clone requests the same shutdown.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    requested: AtomicBool,
    /// The running loop's waker, once there is one.
    waker: Mutex<Option<Arc<Waker>>>,
}

impl Shutdown {
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Asks the replica to stop: it stops accepting, finishes the sync in flight and returns.
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        if let Some(waker) = self
            .0
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            // A failed wake only delays the stop until the next event or timer.
            let _ = waker.wake();
        }
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    pub(super) fn set_waker(&self, waker: Arc<Waker>) {
        *self.0.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker);
    }

    /// Turns SIGINT and SIGTERM into [`request`](Self::request) until the handle is closed.
    pub(super) fn on_signals(&self) -> std::io::Result<Handle> {
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        let handle = signals.handle();
        let shutdown = self.clone();
        std::thread::Builder::new()
            .name("chat-signals".to_owned())
            .spawn(move || {
                for signal in signals.forever() {
                    info!(signal, "shutting down");
                    shutdown.request();
                }
            })?;
        Ok(handle)
    }
}
