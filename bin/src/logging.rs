//! Logging set-up shared by every program that runs a replica: level from `RUST_LOG`
//! (default `info`; an invalid value is an error, not silently ignored), to stderr, with
//! colour only when stderr is a terminal (never in a log file or a pipe).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// The filter `RUST_LOG` asks for, `info` when it is unset or empty.
pub fn filter() -> Result<EnvFilter, String> {
    match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => EnvFilter::builder().parse(&spec).map_err(|e| {
            format!("invalid RUST_LOG={spec:?}: {e} (try RUST_LOG=info or RUST_LOG=chat_net=debug)")
        }),
        Ok(_) | Err(std::env::VarError::NotPresent) => Ok(EnvFilter::new("info")),
        Err(std::env::VarError::NotUnicode(_)) => Err("RUST_LOG is not valid UTF-8".to_owned()),
    }
}

/// Installs the subscriber for this process.
pub fn init() -> Result<(), String> {
    tracing_subscriber::fmt()
        .with_env_filter(filter()?)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}
