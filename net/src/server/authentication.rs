//! Peers prove that they hold the cluster secret (`chat_core::peer_auth`) before a
//! connection carries replication traffic: reading the secret at start-up, and driving each
//! connection's handshake.

use super::event_loop::EventLoop;
use super::links::Kind;
use super::ServerError;
use chat_core::config::Config;
use chat_core::peer_auth::{AuthFrame, ClusterSecret, Step};
use mio::Token;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use tracing::warn;

/// A secret file larger than this is not a secret file (and must not be read whole).
const MAX_SECRET_FILE_BYTES: u64 = 4096;

/// The cluster secret named by the configuration; `None` (with a warning) if none is named.
pub(super) fn load_secret(config: &Config) -> Result<Option<ClusterSecret>, ServerError> {
    let Some(path) = &config.cluster_secret_file else {
        warn!("no cluster_secret_file in the configuration: peers are checked by address only");
        return Ok(None);
    };
    let problem = |problem: String| ServerError::Secret {
        path: path.clone(),
        problem,
    };
    let file = File::open(path).map_err(|e| problem(e.to_string()))?;
    let meta = file.metadata().map_err(|e| problem(e.to_string()))?;
    if meta.len() > MAX_SECRET_FILE_BYTES {
        return Err(problem(format!(
            "it is larger than {MAX_SECRET_FILE_BYTES} bytes"
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warn!("the cluster secret file {path} can be read by other users (chmod 600 it)");
    }
    let mut bytes = Vec::with_capacity(MAX_SECRET_FILE_BYTES as usize + 1);
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| problem(e.to_string()))?;
    ClusterSecret::from_file_contents(bytes)
        .map_err(|e| problem(e.to_string()))
        .map(Some)
}

impl EventLoop {
    /// A handshake frame on a connection proving who is at its other end.
    pub(super) fn on_auth_frame(&mut self, token: Token, frame: AuthFrame) {
        let Some(link) = self.links.get_mut(&token) else {
            return;
        };
        let (auth, done) = match &mut link.kind {
            Kind::PeerInProving { from, auth } => (auth, Kind::PeerIn { from: *from }),
            Kind::PeerOutProving { to, auth } => (auth, Kind::PeerOut { to: *to }),
            _ => return,
        };
        let Some(secret) = &self.peers.secret else {
            return self.reject(token, "a handshake frame while peers are not authenticated");
        };
        match auth.on_frame(secret, frame) {
            Err(e) => self.reject(token, &e.to_string()),
            Ok(Step::Continue(answer)) => {
                if let Some(answer) = answer {
                    self.send_frame(token, &answer);
                }
            }
            Ok(Step::Authenticated(answer)) => {
                if let Some(answer) = answer {
                    self.send_frame(token, &answer);
                }
                self.handshake_done(token, done);
            }
        }
    }
}
