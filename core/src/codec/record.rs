//! (stub: being written) Checksummed log records.
