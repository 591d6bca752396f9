//! Where a replica's outputs go: the one translation from [`Output`] to what a driver does
//! with it, shared by the server, the simulator and the tests.

use crate::chat::Event;
use crate::ids::{ClientId, ReplicaId};
use crate::replica::{Output, PeerMessage, Persist, PersistId, SnapshotJob};
use crate::wire::ServerToClient;

/// One replica output, addressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Send to peer replica `to`.
    Peer { to: ReplicaId, message: PeerMessage },
    /// Make durable after every earlier one, then report `Input::Persisted(id)`.
    Disk { id: PersistId, what: Persist },
    /// Encode and write off the event loop, then report `Input::SnapshotWritten`.
    Snapshot(SnapshotJob),
    /// Send to client session `client` on the connection it is attached to here; dropped if
    /// it has none (the client retries or re-attaches).
    Client {
        client: ClientId,
        message: ServerToClient,
    },
    /// Send to every client session attached here, each on its connection.
    AttachedClients(ServerToClient),
}

impl From<Output> for Route {
    fn from(output: Output) -> Route {
        let client = |client, message| Route::Client { client, message };
        match output {
            Output::Send { to, message } => Route::Peer { to, message },
            Output::Persist { id, what } => Route::Disk { id, what },
            Output::Snapshot(job) => Route::Snapshot(job),
            Output::Reply {
                client: id,
                request,
                reply,
            } => client(id, ServerToClient::Reply { request, reply }),
            Output::Redirect {
                client: id,
                primary,
            } => client(id, ServerToClient::Redirect { primary }),
            Output::RedirectAttached { primary } => {
                Route::AttachedClients(ServerToClient::Redirect { primary })
            }
            Output::Event(Event::Push {
                client: id,
                message,
            }) => client(id, ServerToClient::Push(message)),
            Output::Event(Event::LoggedOut { client: id }) => client(id, ServerToClient::LoggedOut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{Message, Reply};

    #[test]
    fn client_outputs_become_the_messages_clients_read() {
        let message = Message {
            id: 4,
            from: "ann".into(),
            text: "hi".into(),
        };
        let cases = [
            (
                Output::Reply {
                    client: 7,
                    request: 3,
                    reply: Reply::Acked,
                },
                ServerToClient::Reply {
                    request: 3,
                    reply: Reply::Acked,
                },
            ),
            (
                Output::Redirect {
                    client: 7,
                    primary: Some(2),
                },
                ServerToClient::Redirect { primary: Some(2) },
            ),
            (
                Output::Event(Event::Push {
                    client: 7,
                    message: message.clone(),
                }),
                ServerToClient::Push(message),
            ),
            (
                Output::Event(Event::LoggedOut { client: 7 }),
                ServerToClient::LoggedOut,
            ),
        ];
        for (output, message) in cases {
            assert_eq!(Route::from(output), Route::Client { client: 7, message });
        }
        assert_eq!(
            Route::from(Output::RedirectAttached { primary: Some(1) }),
            Route::AttachedClients(ServerToClient::Redirect { primary: Some(1) })
        );
        let persist = Output::Persist {
            id: 9,
            what: Persist::Records(vec![]),
        };
        assert_eq!(
            Route::from(persist),
            Route::Disk {
                id: 9,
                what: Persist::Records(vec![])
            }
        );
    }
}
