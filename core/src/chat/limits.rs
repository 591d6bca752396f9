//! Limits of the chat state machine. Every replica must use the same values (they shape
//! replies), so they come from the shared `config.yaml`.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Longest user name, in bytes.
    pub max_name_bytes: u32,
    /// Longest message text, in characters (Unicode scalar values).
    pub max_text_chars: u32,
    /// Longest `0|<regex>` pattern, in bytes.
    pub max_pattern_bytes: u32,
    /// Largest compiled regex, in bytes (`regex::RegexBuilder::size_limit`).
    pub max_regex_compiled_bytes: u32,
    /// Most names one `0|` reply lists (it also says how many matched in all).
    pub list_max: u32,
    /// Most messages one `6|` reply delivers (it also says how many are still queued), so that
    /// a reply always fits in a frame.
    pub deliver_max: u32,
    /// Most messages queued for one account.
    pub max_queue: u32,
    /// Most bytes of queued messages (text and sender name) over all accounts: bounds the
    /// state, hence memory and snapshot size.
    pub max_queued_bytes: u64,
    /// Most accounts in total.
    pub max_accounts: u32,
    /// Most client sessions in the client table (see `crate::service` for which go first).
    pub max_sessions: u32,
    /// Most bytes of the client table (its cached replies, and a fixed cost per row).
    pub max_client_table_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_name_bytes: 32,
            max_text_chars: 1000,
            max_pattern_bytes: 256,
            max_regex_compiled_bytes: 1 << 20,
            list_max: 1000,
            deliver_max: 100,
            max_queue: 10_000,
            max_queued_bytes: 256 << 20,
            max_accounts: 100_000,
            max_sessions: 10_000,
            max_client_table_bytes: 256 << 20,
        }
    }
}
