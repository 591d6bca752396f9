//! `chat-client --json`: one JSON object per reply and per pushed message (the format is in
//! README.md, "Scripting chat-client"). The names here are the contract: they are spelled out
//! rather than derived from the Rust types, so renaming a type cannot change them.

use super::{Answer, Failure};
use chat_core::chat::{ChatError, Message, Reply};
use chat_core::client::Failure as SessionFailure;
use chat_net::client::{ClientError, Incoming};
use serde_json::{json, Value};

/// `{"type":"reply","line":N,"ok":true,"reply":"sent","id":7}` or
/// `{"type":"reply","line":N,"ok":false,"error":"no_such_user","message":"no such user"}`.
pub(super) fn answer(line: usize, answer: &Answer) -> Value {
    let mut object = json!({ "type": "reply", "line": line, "ok": true });
    let fields = match answer {
        Answer::Reply(reply) => reply_fields(reply),
        Answer::Text(text) => json!({ "reply": "text", "text": text }),
        Answer::Failed(failure) => {
            object["ok"] = json!(false);
            json!({ "error": failure_kind(failure), "message": failure.message() })
        }
    };
    merge(&mut object, fields);
    object
}

/// `{"type":"message","id":7,"from":"alice","text":"hi"}`, `{"type":"logged_out"}`,
/// `{"type":"session_expired"}` or `{"type":"error","message":"..."}`.
pub(super) fn incoming(event: &Incoming) -> Value {
    match event {
        Incoming::Message(m) => {
            let mut object = json!({ "type": "message" });
            merge(&mut object, message(m));
            object
        }
        Incoming::LoggedOut => json!({ "type": "logged_out" }),
        Incoming::SessionExpired => json!({ "type": "session_expired" }),
        Incoming::Trouble(e) => json!({ "type": "error", "message": e.to_string() }),
        Incoming::Unavailable(w) => json!({ "type": "unavailable", "status": w.to_string() }),
        Incoming::Available => json!({ "type": "available" }),
    }
}

fn reply_fields(reply: &Reply) -> Value {
    match reply {
        Reply::SessionOpened => json!({ "reply": "session_opened" }),
        Reply::Accounts { names, total } => {
            json!({ "reply": "accounts", "names": names, "total": total })
        }
        Reply::Created => json!({ "reply": "created" }),
        Reply::LoggedIn { user, waiting } => {
            json!({ "reply": "logged_in", "user": user, "waiting": waiting })
        }
        Reply::LoggedOut => json!({ "reply": "logged_out" }),
        Reply::Deleted => json!({ "reply": "deleted" }),
        Reply::Sent { id } => json!({ "reply": "sent", "id": id }),
        Reply::Delivered { messages, more } => json!({
            "reply": "delivered",
            "messages": messages.iter().map(message).collect::<Vec<_>>(),
            "more": more,
        }),
        Reply::Acked => json!({ "reply": "acked" }),
        Reply::Error(e) => json!({ "reply": "error", "error": chat_error_kind(e) }),
    }
}

fn message(m: &Message) -> Value {
    json!({ "id": m.id, "from": m.from, "text": m.text })
}

fn failure_kind(failure: &Failure) -> &'static str {
    match failure {
        Failure::Invalid(_) => "invalid_command",
        Failure::NotUtf8 => "not_utf8",
        Failure::Chat(e) => chat_error_kind(e),
        Failure::Client(ClientError::Failed(SessionFailure::Unavailable { .. })) => "unavailable",
        Failure::Client(ClientError::Failed(SessionFailure::Cancelled { .. })) => "cancelled",
        Failure::Client(_) => "client",
        Failure::Extension(_) => "command_failed",
    }
}

fn chat_error_kind(e: &ChatError) -> &'static str {
    match e {
        ChatError::BadPattern(_) => "bad_pattern",
        ChatError::PatternTooLong { .. } => "pattern_too_long",
        ChatError::NameEmpty => "name_empty",
        ChatError::NameTooLong { .. } => "name_too_long",
        ChatError::NameBadChar => "name_bad_char",
        ChatError::NameTaken => "name_taken",
        ChatError::NoSuchUser => "no_such_user",
        ChatError::BadCredentials => "bad_credentials",
        ChatError::NotLoggedIn => "not_logged_in",
        ChatError::TextEmpty => "text_empty",
        ChatError::TextTooLong { .. } => "text_too_long",
        ChatError::QueueFull { .. } => "queue_full",
        ChatError::ServiceFull { .. } => "service_full",
        ChatError::TooManyAccounts { .. } => "too_many_accounts",
        ChatError::SessionExpired => "session_expired",
        ChatError::RequestTooLarge { .. } => "request_too_large",
    }
}

fn merge(object: &mut Value, fields: Value) {
    if let (Value::Object(object), Value::Object(fields)) = (object, fields) {
        object.extend(fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_and_failures_are_one_flat_object() {
        let sent = answer(3, &Answer::Reply(Reply::Sent { id: 7 }));
        assert_eq!(
            sent.to_string(),
            r#"{"id":7,"line":3,"ok":true,"reply":"sent","type":"reply"}"#
        );
        let failed = answer(4, &Answer::Failed(Failure::Chat(ChatError::NoSuchUser)));
        assert_eq!(failed["ok"], json!(false));
        assert_eq!(failed["error"], json!("no_such_user"));
        assert_eq!(failed["message"], json!("no such user"));
        let delivered = answer(
            5,
            &Answer::Reply(Reply::Delivered {
                messages: vec![Message {
                    id: 1,
                    from: "ann".into(),
                    text: "a \"quoted\"\nline".into(),
                }],
                more: 2,
            }),
        );
        assert_eq!(
            delivered["messages"][0]["text"],
            json!("a \"quoted\"\nline")
        );
        assert_eq!(delivered["more"], json!(2));
        assert!(!delivered.to_string().contains('\n'), "one line per object");
    }

    #[test]
    fn pushes_name_their_type() {
        let m = Message {
            id: 9,
            from: "bob".into(),
            text: "hi".into(),
        };
        assert_eq!(
            incoming(&Incoming::Message(m)).to_string(),
            r#"{"from":"bob","id":9,"text":"hi","type":"message"}"#
        );
        assert_eq!(incoming(&Incoming::LoggedOut)["type"], json!("logged_out"));
    }
}
