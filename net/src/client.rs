//! (stub: being written) The client library.
