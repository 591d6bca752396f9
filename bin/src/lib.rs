//! Code shared by the programs: loading the configuration, the interactive client loop
//! (`chat-client` and `chat demo`), replica child processes (`chat demo` and the tests), and
//! the cluster secret file (`chat-admin new-secret` and `chat demo`).

pub mod process;
pub mod repl;
pub mod secret;
pub mod settings;
