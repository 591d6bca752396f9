//! Client connections: which session each serves (so that the replica's replies, redirects
//! and pushes for a session go to the connection that session last used), how fast each may
//! open sessions, and what each message asks of the event loop ([`ClientAction`]).

use super::session_opens::{SessionOpens, Verdict};
use chat_core::chat::Op;
use chat_core::config::NetLimits;
use chat_core::ids::ClientId;
use chat_core::password::request::PasswordRequest;
use chat_core::peer_auth::RemoveOrder;
use chat_core::replica::Input;
use chat_core::time::Instant;
use chat_core::wire::{ClientToServer, PasswordAction};
use mio::Token;
use std::collections::HashMap;
use std::net::IpAddr;
use tracing::debug;

/// What a client's message asks for.
#[derive(Debug)]
pub(super) enum ClientAction {
    /// Hand this to the replica.
    Replica(Input),
    /// Serve this request with a password (hash or verify first).
    Password(PasswordRequest),
    /// Answer with the replica's status.
    Status,
    /// Check the operator's removal order and answer.
    Remove(RemoveOrder),
    /// Close the connection: it broke a rule, for this reason.
    Reject(String),
    /// Nothing (a session opening over its address's rate is dropped; its client retries).
    Ignore,
}

/// The sessions attached to client connections. A connection serves one session at a time.
pub(super) struct Clients {
    net: NetLimits,
    connection_of: HashMap<ClientId, Token>,
    session_of: HashMap<Token, ClientId>,
    /// How fast each client connection and address may open sessions.
    session_opens: SessionOpens,
}

impl Clients {
    pub(super) fn new(net: &NetLimits) -> Clients {
        Clients {
            net: net.clone(),
            connection_of: HashMap::new(),
            session_of: HashMap::new(),
            session_opens: SessionOpens::new(net),
        }
    }

    /// The connection `client`'s replies and pushes go to, if it has one here.
    pub(super) fn connection_of(&self, client: ClientId) -> Option<Token> {
        self.connection_of.get(&client).copied()
    }

    /// Every connection a session is attached to.
    pub(super) fn attached_connections(&self) -> impl Iterator<Item = Token> + '_ {
        self.session_of.keys().copied()
    }

    /// A message from the client connection `token`, from `ip`.
    pub(super) fn on_message(
        &mut self,
        token: Token,
        ip: IpAddr,
        message: ClientToServer,
        now: Instant,
    ) -> ClientAction {
        match message {
            ClientToServer::Attach { client } => {
                self.attach(token, client);
                ClientAction::Replica(Input::ClientAttached(client))
            }
            ClientToServer::Request(request)
                if matches!(
                    request.op,
                    Op::CreateWithPassword { .. }
                        | Op::LoginVerified { .. }
                        | Op::LoginRefused { .. }
                ) =>
            {
                // Only the primary orders these, after hashing or verifying a password.
                ClientAction::Reject("sent an operation only the primary may order (forged)".into())
            }
            ClientToServer::Request(request) if request.op == Op::OpenSession => {
                match self.session_opens.allow(token, ip, now) {
                    Verdict::Allowed => {
                        self.attach(token, request.client);
                        ClientAction::Replica(Input::Client(request))
                    }
                    // Over its own rate, the connection is closed; over its address's, the
                    // opening is dropped (its client retries later).
                    Verdict::ConnectionOver => ClientAction::Reject(format!(
                        "opens sessions faster than {} per second (after {})",
                        self.net.session_opens_per_s_per_connection,
                        self.net.session_open_burst_per_connection
                    )),
                    Verdict::AddressOver => {
                        debug!(%ip, "dropping a session opening over the address's rate");
                        ClientAction::Ignore
                    }
                }
            }
            ClientToServer::Request(request) => {
                self.attach(token, request.client);
                ClientAction::Replica(Input::Client(request))
            }
            ClientToServer::WithPassword {
                client,
                request,
                action,
                user,
                password,
            } => {
                self.attach(token, client);
                let request = PasswordRequest::new(client, request, action, user, password);
                ClientAction::Password(request)
            }
            ClientToServer::Status => ClientAction::Status,
            ClientToServer::Remove(order) => ClientAction::Remove(order),
        }
    }

    /// Routes `client`'s replies and pushes to `token` from now on.
    fn attach(&mut self, token: Token, client: ClientId) {
        if let Some(old) = self.session_of.insert(token, client) {
            if old == client {
                return;
            }
            self.detach(old, token);
        }
        self.connection_of.insert(client, token);
    }

    /// Forgets `client`'s route if it still leads to `token`.
    fn detach(&mut self, client: ClientId, token: Token) {
        if self.connection_of.get(&client) == Some(&token) {
            self.connection_of.remove(&client);
        }
    }

    /// The client connection `token` closed.
    pub(super) fn closed(&mut self, token: Token) {
        if let Some(client) = self.session_of.remove(&token) {
            self.detach(client, token);
        }
        self.session_opens.forget(token);
    }
}

/// A client message's kind, for the request counter (never its contents).
pub(super) fn request_kind(message: &ClientToServer) -> &'static str {
    match message {
        ClientToServer::Attach { .. } => "attach",
        ClientToServer::Status => "status",
        ClientToServer::Remove(_) => "remove",
        ClientToServer::WithPassword { action, .. } => match action {
            PasswordAction::Create => "create_with_password",
            PasswordAction::Login => "login_with_password",
        },
        ClientToServer::Request(request) => match request.op {
            Op::OpenSession => "open_session",
            Op::List { .. } => "list",
            Op::Create { .. } => "create",
            Op::Login { .. } => "login",
            Op::Logout => "logout",
            Op::Delete => "delete",
            Op::Send { .. } => "send",
            Op::Deliver => "deliver",
            Op::Ack { .. } => "ack",
            // Forged: only the primary's driver orders these (the connection is closed).
            Op::CreateWithPassword { .. } | Op::LoginVerified { .. } | Op::LoginRefused { .. } => {
                "forged"
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(clients: &mut Clients, token: Token, client: ClientId) {
        let ip = IpAddr::from([127, 0, 0, 1]);
        let message = ClientToServer::Attach { client };
        clients.on_message(token, ip, message, Instant::ZERO);
    }

    #[test]
    fn a_closed_connection_only_removes_a_route_to_itself() {
        let mut clients = Clients::new(&NetLimits::default());
        attach(&mut clients, Token(10), 7);
        attach(&mut clients, Token(11), 7);
        assert_eq!(clients.connection_of(7), Some(Token(11)), "moved");
        clients.closed(Token(10));
        assert_eq!(clients.connection_of(7), Some(Token(11)), "kept");
        clients.closed(Token(11));
        assert_eq!(clients.connection_of(7), None);
    }

    #[test]
    fn a_connection_serves_one_session_at_a_time() {
        let mut clients = Clients::new(&NetLimits::default());
        attach(&mut clients, Token(10), 7);
        attach(&mut clients, Token(10), 8);
        assert_eq!(clients.connection_of(7), None);
        assert_eq!(clients.connection_of(8), Some(Token(10)));
    }
}
