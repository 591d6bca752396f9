//! (stub: being written) Write-ahead log and snapshots on real files.
