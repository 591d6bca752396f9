//! What the clients saw: every call, return and push, with its simulated time. The checkers
//! read it, and it can be written as JSON Lines for an independent checker (format in
//! `sim/README.md`).

use chat_core::chat::{Message, Reply};
use chat_core::client::Ask;
use chat_core::ids::{ClientId, RequestNo};
use chat_core::time::Instant;
use chat_core::wire::PasswordAction;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::{self, Write};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request the client session issued (`chat_core::client::Ask`: what the user
    /// asked, the plain password included, which the checkers need).
    Call(Ask),
    Return(Reply),
    /// A message pushed to this session on connection `conn` (possibly again: a client
    /// shows it once).
    Push {
        conn: u64,
        message: Message,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryEvent {
    pub time: Instant,
    /// The client slot (a virtual user agent; its sessions follow one another).
    pub slot: usize,
    pub client: ClientId,
    /// The request a call or return belongs to (0 for a push).
    pub request: RequestNo,
    pub kind: Kind,
}

/// One operation: a call and, if the client saw one, its return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub slot: usize,
    pub client: ClientId,
    pub request: RequestNo,
    pub op: Ask,
    pub call: Instant,
    pub ret: Option<(Instant, Reply)>,
}

#[derive(Clone, Debug, Default)]
pub struct History {
    pub events: Vec<HistoryEvent>,
}

impl History {
    pub fn call(
        &mut self,
        time: Instant,
        slot: usize,
        client: ClientId,
        request: RequestNo,
        call: impl Into<Ask>,
    ) {
        self.push_event(time, slot, client, request, Kind::Call(call.into()));
    }

    pub fn ret(
        &mut self,
        time: Instant,
        slot: usize,
        client: ClientId,
        request: RequestNo,
        reply: &Reply,
    ) {
        self.push_event(time, slot, client, request, Kind::Return(reply.clone()));
    }

    pub fn pushed(
        &mut self,
        time: Instant,
        slot: usize,
        client: ClientId,
        conn: u64,
        message: &Message,
    ) {
        let message = message.clone();
        self.push_event(time, slot, client, 0, Kind::Push { conn, message });
    }

    fn push_event(
        &mut self,
        time: Instant,
        slot: usize,
        client: ClientId,
        request: RequestNo,
        kind: Kind,
    ) {
        self.events.push(HistoryEvent {
            time,
            slot,
            client,
            request,
            kind,
        });
    }

    /// Calls paired with their returns, in call order.
    pub fn operations(&self) -> Vec<Operation> {
        let mut ops: Vec<Operation> = Vec::new();
        let mut open: BTreeMap<(ClientId, RequestNo), usize> = BTreeMap::new();
        for event in &self.events {
            match &event.kind {
                Kind::Call(op) => {
                    open.insert((event.client, event.request), ops.len());
                    ops.push(Operation {
                        slot: event.slot,
                        client: event.client,
                        request: event.request,
                        op: op.clone(),
                        call: event.time,
                        ret: None,
                    });
                }
                Kind::Return(reply) => {
                    let at = open
                        .remove(&(event.client, event.request))
                        .expect("a return follows its call");
                    ops[at].ret = Some((event.time, reply.clone()));
                }
                Kind::Push { .. } => {}
            }
        }
        ops
    }

    /// Writes one JSON object per event (see `sim/README.md`).
    pub fn write_json_lines(&self, mut out: impl Write) -> io::Result<()> {
        let mut ops: BTreeMap<(ClientId, RequestNo), &Ask> = BTreeMap::new();
        for event in &self.events {
            let mut line = Map::new();
            line.insert("time_us".into(), json!(event.time.micros()));
            line.insert("client".into(), json!(format!("{:032x}", event.client)));
            line.insert("slot".into(), json!(event.slot));
            match &event.kind {
                Kind::Call(op) => {
                    ops.insert((event.client, event.request), op);
                    line.insert("type".into(), json!("call"));
                    line.insert("request".into(), json!(event.request));
                    insert_op(&mut line, op);
                    line.insert("result".into(), Value::Null);
                }
                Kind::Return(reply) => {
                    line.insert("type".into(), json!("return"));
                    line.insert("request".into(), json!(event.request));
                    insert_op(&mut line, ops[&(event.client, event.request)]);
                    line.insert("result".into(), to_value(reply));
                }
                Kind::Push { conn, message } => {
                    line.insert("type".into(), json!("push"));
                    line.insert("conn".into(), json!(conn));
                    line.insert("message".into(), to_value(message));
                }
            }
            serde_json::to_writer(&mut out, &Value::Object(line))?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("chat values serialize to JSON")
}

/// `"op": "Send", "args": {"to": ..., "text": ...}` (a unit operation has empty args); a call
/// with a password is `"op": "CreateWithPassword"` or `"LoginWithPassword"`, `"args":
/// {"user": ..., "password": ...}`.
fn insert_op(line: &mut Map<String, Value>, call: &Ask) {
    let op = match call {
        Ask::Op(op) => op,
        Ask::WithPassword {
            action,
            user,
            password,
        } => {
            let name = match action {
                PasswordAction::Create => "CreateWithPassword",
                PasswordAction::Login => "LoginWithPassword",
            };
            line.insert("op".into(), json!(name));
            line.insert(
                "args".into(),
                json!({"user": user, "password": password.expose()}),
            );
            return;
        }
    };
    let (name, args) = match to_value(op) {
        Value::String(name) => (name, Value::Object(Map::new())),
        Value::Object(map) if map.len() == 1 => map.into_iter().next().expect("one entry"),
        other => unreachable!("an externally tagged enum, not {other}"),
    };
    line.insert("op".into(), Value::String(name));
    line.insert("args".into(), args);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_core::chat::Op;

    #[test]
    fn json_lines_name_the_operation_and_its_arguments() {
        let mut history = History::default();
        let op = Op::Send {
            to: "bob".into(),
            text: "hi".into(),
        };
        history.call(Instant(5), 1, 0xab, 2, &op);
        history.ret(Instant(9), 1, 0xab, 2, &Reply::Sent { id: 7 });
        history.call(Instant(10), 1, 0xab, 3, &Op::Deliver);
        let mut out = Vec::new();
        history.write_json_lines(&mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0]["type"], "call");
        assert_eq!(lines[0]["op"], "Send");
        assert_eq!(lines[0]["args"]["to"], "bob");
        assert_eq!(lines[0]["client"], format!("{:032x}", 0xab));
        assert_eq!(lines[1]["type"], "return");
        assert_eq!(lines[1]["time_us"], 9);
        assert_eq!(lines[1]["result"]["Sent"]["id"], 7);
        assert_eq!(lines[2]["op"], "Deliver");
        assert_eq!(lines[2]["args"], json!({}));

        let ops = history.operations();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].ret, Some((Instant(9), Reply::Sent { id: 7 })));
        assert_eq!(ops[1].ret, None);
    }
}
