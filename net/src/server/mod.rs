//! (stub: being written) One replica's event loop.
