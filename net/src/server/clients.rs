//! Client connections: their requests go to the replica (those with a password through
//! [`super::passwords`] first), and the replica's replies, redirects and pushes for a session
//! go to the connection that session last used.

use super::event_loop::EventLoop;
use super::links::Kind;
use super::session_opens::Verdict;
use chat_core::chat::Op;
use chat_core::ids::ClientId;
use chat_core::replica::Input;
use chat_core::wire::{ClientToServer, ServerToClient};
use mio::Token;
use std::collections::HashMap;
use tracing::debug;

/// Which connection each session is attached to. A connection serves one session at a time.
#[derive(Debug, Default)]
pub(super) struct Routes(HashMap<ClientId, Token>);

impl Routes {
    /// Forgets `client`'s route if it still leads to `token`.
    pub(super) fn detach(&mut self, client: ClientId, token: Token) {
        if self.0.get(&client) == Some(&token) {
            self.0.remove(&client);
        }
    }
}

impl EventLoop {
    pub(super) fn on_client_message(&mut self, token: Token, message: ClientToServer) {
        match message {
            ClientToServer::Attach { client } => {
                self.attach(token, client);
                self.replica.handle(self.now, Input::ClientAttached(client));
                self.drain_outputs();
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
                self.reject(
                    token,
                    "sent an operation only the primary may order (forged)",
                );
            }
            ClientToServer::Request(request)
                if request.op == Op::OpenSession && !self.may_open_session(token) => {}
            ClientToServer::Request(request) => {
                self.attach(token, request.client);
                self.replica.handle(self.now, Input::Client(request));
                self.drain_outputs();
            }
            ClientToServer::WithPassword {
                client,
                request,
                action,
                user,
                password,
            } => {
                self.attach(token, client);
                self.on_password_request(client, request, action, user, password);
            }
            ClientToServer::Status => {
                let status = ServerToClient::Status(self.replica.status());
                self.send_frame(token, &status);
            }
        }
    }

    /// Whether this connection, and its address, are within their rates of session openings
    /// (`net.session_opens_*`); counts the opening if so. Over its own rate, the connection
    /// is closed; over its address's, the opening is dropped (its client retries later).
    fn may_open_session(&mut self, token: Token) -> bool {
        let Some(ip) = self.links.get(&token).map(|link| link.ip()) else {
            return false;
        };
        match self.session_opens.allow(token, ip, self.now) {
            Verdict::Allowed => true,
            Verdict::ConnectionOver => {
                let why = format!(
                    "opens sessions faster than {} per second (after {})",
                    self.net.session_opens_per_s_per_connection,
                    self.net.session_open_burst_per_connection
                );
                self.reject(token, &why);
                false
            }
            Verdict::AddressOver => {
                debug!(%ip, "dropping a session opening over the address's rate");
                false
            }
        }
    }

    /// Routes `client`'s replies and pushes to `token` from now on.
    fn attach(&mut self, token: Token, client: ClientId) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        if let Kind::Client {
            attached: Some(old),
        } = link.kind
        {
            if old == client {
                return;
            }
            self.routes.detach(old, token);
        }
        link.kind = Kind::Client {
            attached: Some(client),
        };
        self.routes.0.insert(client, token);
    }

    /// Delivers to the connection `client` is attached to; dropped if there is none here.
    pub(super) fn send_to_client(&mut self, client: ClientId, message: &ServerToClient) {
        if let Some(&token) = self.routes.0.get(&client) {
            self.send_frame(token, message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detach_only_removes_a_route_to_that_connection() {
        let mut routes = Routes::default();
        routes.0.insert(7, Token(10));
        routes.detach(7, Token(11));
        assert_eq!(
            routes.0.get(&7),
            Some(&Token(10)),
            "moved to another connection"
        );
        routes.detach(7, Token(10));
        assert!(routes.0.is_empty());
    }
}
