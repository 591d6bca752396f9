//! Code shared by the programs: loading the configuration, the interactive client loop
//! (`chat-client` and `chat demo`), replica child processes (`chat demo` and the tests), the
//! cluster secret file (`chat-admin new-secret` and `chat demo`), the TLS files (`chat-admin
//! new-tls` and `chat demo`), the cluster status table
//! (`chat-admin status` and the demo's `:status`), logging set-up, and what the client shows
//! while a request waits (`waiting`).

pub mod cluster_status;
pub mod demo;
pub mod logging;
pub mod process;
pub mod repl;
pub mod secret;
pub mod settings;
pub mod tls_files;
pub mod waiting;
