//! Whose data directory this is. A replica started on another replica's directory would act
//! on that replica's promises (its votes, its log), and one started on another cluster's
//! directory would hold a mix of the two clusters' states once the primary sent it the log
//! past the foreign index: both break what the protocol promises, silently. So the directory
//! records its owner in a small text file, [`IDENTITY_FILE`]:
//!
//! ```text
//! # Whose data directory this is: chat-server checks it at every start (README, "Troubleshooting").
//! replica 0
//! cluster 5e1f0c...                    (32 hex digits; `none` without a cluster secret)
//! ```
//!
//! - [`check`] runs right after the directory's lock is taken, before anything else in the
//!   directory is read: a file that names another replica or another cluster, or that is
//!   garbled, refuses the start ([`ServerError::DataDirIdentity`], saying what to do), and
//!   the directory is left as it was (a garbled file is never overwritten).
//! - A missing file is written by [`Checked::record`], once the start-up checks on an empty
//!   directory have passed (a start refused for disk loss writes nothing) and before the
//!   storage opens: on a new directory, and on one with state from a version before this
//!   check (it is adopted as this replica's of this cluster, so existing deployments keep
//!   starting). Written durably: a temporary file, synced, renamed, the directory synced.
//! - The cluster is named by [`ClusterSecret::identity_tag`](chat_core::peer_auth::ClusterSecret::identity_tag),
//!   a MAC of a fixed label keyed with the cluster secret: it tells clusters apart without
//!   revealing the secret. Without a secret there is no cluster to name (`none`), and only
//!   the replica id is checked: a directory recorded with a tag is accepted by a start
//!   without a secret (and keeps its tag), and one recorded as `none` takes the tag of the
//!   secret configured later.
//!
//! Storage ignores the file (it reads only its own names: `wal-*.log`, `snapshot-*.snap`,
//! `*.tmp`), so a directory holding only `LOCK` and `IDENTITY` still holds no state. A
//! temporary `IDENTITY.tmp` left by a crash is rewritten by the next start, and storage
//! removes leftover `*.tmp` files when it opens.
//!
//! Not detected: a directory from before this check, started as another replica or in
//! another cluster before its own replica recorded it.

use super::error::ServerError;
use chat_core::ids::ReplicaId;
use chat_core::peer_auth::IDENTITY_TAG_BYTES;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use tracing::info;

/// The identity file's name inside the data directory.
pub(super) const IDENTITY_FILE: &str = "IDENTITY";
/// Where a new identity file is written before it is renamed into place.
const TEMP_FILE: &str = "IDENTITY.tmp";
/// A longer file is not an identity file (and is not read whole).
const MAX_BYTES: u64 = 4096;
/// The cluster of a configuration without a cluster secret.
const NO_CLUSTER: &str = "none";

/// Whose a data directory is: which replica, of which cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) replica: ReplicaId,
    /// The cluster secret's [`identity_tag`](chat_core::peer_auth::ClusterSecret::identity_tag);
    /// `None` without a secret (no cluster check then, only the replica id).
    pub(super) cluster: Option<String>,
}

impl Identity {
    fn cluster_name(&self) -> &str {
        self.cluster.as_deref().unwrap_or(NO_CLUSTER)
    }

    /// The file's contents.
    fn text(&self) -> String {
        format!(
            "# Whose data directory this is: chat-server checks it at every start \
             (README, \"Troubleshooting\").\nreplica {}\ncluster {}\n",
            self.replica,
            self.cluster_name()
        )
    }

    /// Reads an identity file's contents; `Err` says what is wrong with it.
    fn parse(text: &str) -> Result<Identity, String> {
        let mut replica = None;
        let mut cluster = None;
        for (n, line) in text.lines().enumerate().map(|(n, l)| (n + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let value = value.trim();
            match key {
                "replica" if replica.is_none() => {
                    let id = value
                        .parse::<ReplicaId>()
                        .map_err(|_| format!("line {n}: {value:?} is not a replica id"))?;
                    replica = Some(id);
                }
                "cluster" if cluster.is_none() => {
                    let tag = if value == NO_CLUSTER {
                        None
                    } else if value.len() == 2 * IDENTITY_TAG_BYTES
                        && value
                            .bytes()
                            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    {
                        Some(value.to_owned())
                    } else {
                        return Err(format!(
                            "line {n}: {value:?} is not a cluster tag ({} hex digits, or \
                             `{NO_CLUSTER}`)",
                            2 * IDENTITY_TAG_BYTES
                        ));
                    };
                    cluster = Some(tag);
                }
                "replica" | "cluster" => return Err(format!("line {n}: a second `{key}` line")),
                _ => return Err(format!("line {n}: unexpected {line:?}")),
            }
        }
        match (replica, cluster) {
            (Some(replica), Some(cluster)) => Ok(Identity { replica, cluster }),
            (None, _) => Err("no `replica` line".into()),
            (_, None) => Err("no `cluster` line".into()),
        }
    }
}

/// What [`check`] found that is left to do once the start may go on.
#[must_use = "record the identity before the storage opens"]
#[derive(Debug)]
pub(super) struct Checked {
    dir: PathBuf,
    /// The identity to write, if the file is missing or has no cluster yet.
    write: Option<Identity>,
    /// Whether the file was missing (not only without a cluster).
    missing: bool,
}

/// Reads `dir`'s identity file and refuses the start if it names another replica or another
/// cluster than `me`, or cannot be read as one; changes nothing. `secret_file` (the
/// configuration's `cluster_secret_file`) is named in the refusal.
pub(super) fn check(
    dir: &Path,
    me: &Identity,
    secret_file: Option<&str>,
) -> Result<Checked, ServerError> {
    let path = dir.join(IDENTITY_FILE);
    let checked = |write: Option<Identity>, missing| Checked {
        dir: dir.to_owned(),
        write,
        missing,
    };
    let text = match read(&path) {
        Ok(text) => text,
        Err(Unreadable::Missing) => return Ok(checked(Some(me.clone()), true)),
        Err(Unreadable::Io(source)) => {
            return Err(ServerError::Io {
                what: format!("reading {}", path.display()),
                source,
            })
        }
        Err(Unreadable::Garbled(why)) => return Err(garbled(dir, &path, me, &why)),
    };
    let found = Identity::parse(&text).map_err(|why| garbled(dir, &path, me, &why))?;
    let other_cluster = matches!((&found.cluster, &me.cluster), (Some(a), Some(b)) if a != b);
    if found.replica != me.replica || other_cluster {
        return Err(refusal(dir, &path, &found, me, secret_file));
    }
    if found.cluster.is_none() && me.cluster.is_some() {
        // Recorded without a secret, and one is configured now: the cluster gets its name.
        return Ok(checked(Some(me.clone()), false));
    }
    Ok(checked(None, false))
}

impl Checked {
    /// Writes the identity file if [`check`] found it missing (on a directory that
    /// `holds_no_state` or, from before this check, holds state: it is adopted) or without
    /// a cluster; durably.
    pub(super) fn record(self, holds_no_state: bool) -> Result<(), ServerError> {
        let Some(identity) = self.write else {
            return Ok(());
        };
        write(&self.dir, &identity)?;
        let path = self.dir.join(IDENTITY_FILE);
        let cluster = identity.cluster_name();
        if !self.missing {
            info!(
                "{}: recorded cluster {cluster} (a cluster secret is configured now)",
                path.display()
            );
        } else if holds_no_state {
            info!(
                "{}: recorded that this directory is replica {}'s, of cluster {cluster}",
                path.display(),
                identity.replica
            );
        } else {
            info!(
                "data directory {} holds state but no {IDENTITY_FILE} file (from an earlier \
                 version, or removed): adopted as replica {}'s, of cluster {cluster}",
                self.dir.display(),
                identity.replica
            );
        }
        Ok(())
    }
}

enum Unreadable {
    Missing,
    Io(std::io::Error),
    Garbled(String),
}

fn read(path: &Path) -> Result<String, Unreadable> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(Unreadable::Missing),
        Err(e) => return Err(Unreadable::Io(e)),
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(Unreadable::Io)?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(Unreadable::Garbled(format!(
            "it is larger than {MAX_BYTES} bytes"
        )));
    }
    String::from_utf8(bytes).map_err(|_| Unreadable::Garbled("it is not text".into()))
}

/// Writes `identity` into `dir` durably: a temporary file, synced, renamed over the name,
/// then the directory (and its parent, which may have just gained it) synced.
fn write(dir: &Path, identity: &Identity) -> Result<(), ServerError> {
    let temp = dir.join(TEMP_FILE);
    let path = dir.join(IDENTITY_FILE);
    let writing = || ServerError::io(format!("writing {}", path.display()));
    let mut file = File::create(&temp).map_err(writing())?;
    file.write_all(identity.text().as_bytes())
        .map_err(writing())?;
    file.sync_all().map_err(writing())?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(writing())?;
    sync_dir(dir).map_err(writing())?;
    match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent),
        _ => sync_dir(Path::new(".")),
    }
    .map_err(writing())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What this start is, in the words of a refusal.
fn describe(identity: &Identity, secret_file: Option<&str>) -> String {
    match (&identity.cluster, secret_file) {
        (Some(tag), Some(file)) => format!(
            "replica {} of the cluster whose secret ({file}) gives cluster {tag}",
            identity.replica
        ),
        _ => format!("replica {}", identity.replica),
    }
}

/// The refusal of a directory that belongs to another replica or cluster, one line.
fn refusal(
    dir: &Path,
    path: &Path,
    found: &Identity,
    me: &Identity,
    secret_file: Option<&str>,
) -> ServerError {
    let other_cluster = found.cluster.is_some() && me.cluster.is_some();
    let other_cluster = other_cluster && found.cluster != me.cluster;
    let other_replica = found.replica != me.replica;
    let (owner, why, mut todo) = if other_cluster {
        let owner = if other_replica {
            format!("replica {} of another cluster", found.replica)
        } else {
            "another cluster".to_owned()
        };
        let why = "it holds that cluster's log and promises, and a start on it would mix the \
                   two clusters' states";
        let todo = format!(
            "Start replica {} on this cluster's directory for it (--data-dir, or data_dir in \
             the configuration).",
            me.replica
        );
        (owner, why.to_owned(), todo)
    } else {
        let why = format!(
            "it holds replica {}'s log and promises, which replica {} must not act on",
            found.replica, me.replica
        );
        let todo = format!(
            "Start replica {} on it, and replica {} on its own directory (--data-dir, or \
             data_dir in the configuration).",
            found.replica, me.replica
        );
        (format!("replica {}", found.replica), why, todo)
    };
    if other_cluster && !other_replica {
        todo += &format!(
            " If this is its own directory and the cluster secret was replaced on purpose, \
             remove {} and start again (the new secret's cluster is then recorded).",
            path.display()
        );
    }
    ServerError::DataDirIdentity(format!(
        "data directory {} belongs to {owner} ({} records replica {}, cluster {}), but this \
         is {}: {why}. {todo} Its log and snapshots were left as they were.",
        dir.display(),
        path.display(),
        found.replica,
        found.cluster_name(),
        describe(me, secret_file),
    ))
}

/// The refusal of an identity file that cannot be read as one, one line.
fn garbled(dir: &Path, path: &Path, me: &Identity, why: &str) -> ServerError {
    ServerError::DataDirIdentity(format!(
        "data directory {}: {} is not a readable identity file ({why}). It records which \
         replica and which cluster the directory belongs to, and is never overwritten: check \
         that this is replica {}'s directory of this cluster; if it is, write the two lines \
         `replica {}` and `cluster {}` into it, or remove it (the next start records this \
         replica and cluster). Its log and snapshots were left as they were.",
        dir.display(),
        path.display(),
        me.replica,
        me.replica,
        me.cluster_name(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAG: &str = "0123456789abcdef0123456789abcdef";
    const OTHER_TAG: &str = "fedcba9876543210fedcba9876543210";

    fn me(replica: ReplicaId, cluster: Option<&str>) -> Identity {
        Identity {
            replica,
            cluster: cluster.map(str::to_owned),
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn refusal_text(dir: &Path, me: &Identity) -> String {
        match check(dir, me, Some("/etc/chat/cluster.secret")) {
            Err(e @ ServerError::DataDirIdentity(_)) => e.to_string(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn a_new_directory_records_its_identity_and_the_same_replica_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let zero = me(0, Some(TAG));
        let checked = check(dir.path(), &zero, None).unwrap();
        assert!(names(dir.path()).is_empty(), "check writes nothing");
        checked.record(true).unwrap();
        assert_eq!(names(dir.path()), [IDENTITY_FILE]);
        let text = std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap();
        assert!(
            text.ends_with(&format!("\nreplica 0\ncluster {TAG}\n")),
            "{text}"
        );
        assert_eq!(Identity::parse(&text), Ok(zero.clone()));
        let again = check(dir.path(), &zero, None).unwrap();
        assert!(again.write.is_none());
        again.record(false).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap(),
            text
        );
    }

    #[test]
    fn another_replicas_directory_is_refused_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &me(2, Some(TAG))).unwrap();
        let before = std::fs::read(dir.path().join(IDENTITY_FILE)).unwrap();
        let text = refusal_text(dir.path(), &me(0, Some(TAG)));
        let want = format!(
            "data directory {} belongs to replica 2 ({} records replica 2, cluster {TAG}), \
             but this is replica 0 of the cluster whose secret (/etc/chat/cluster.secret) \
             gives cluster {TAG}: it holds replica 2's log and promises, which replica 0 must \
             not act on. Start replica 2 on it, and replica 0 on its own directory",
            dir.path().display(),
            dir.path().join(IDENTITY_FILE).display()
        );
        assert!(text.starts_with(&want), "{text}");
        // Without a secret the replica id is still checked.
        let text = refusal_text(dir.path(), &me(0, None));
        assert!(text.contains("belongs to replica 2"), "{text}");
        assert!(text.contains("but this is replica 0:"), "{text}");
        assert_eq!(
            std::fs::read(dir.path().join(IDENTITY_FILE)).unwrap(),
            before
        );
    }

    #[test]
    fn another_clusters_directory_is_refused_saying_what_to_remove_if_the_secret_changed() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &me(0, Some(OTHER_TAG))).unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let text = refusal_text(dir.path(), &me(0, Some(TAG)));
        assert!(
            text.contains(&format!(
                "belongs to another cluster ({} records replica 0, cluster {OTHER_TAG}), but \
                 this is replica 0 of the cluster whose secret (/etc/chat/cluster.secret) \
                 gives cluster {TAG}: it holds that cluster's log and promises",
                path.display()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "the cluster secret was replaced on purpose, remove {} and start again",
                path.display()
            )),
            "{text}"
        );
        // Another replica of another cluster: its file is not this replica's to remove.
        write(dir.path(), &me(2, Some(OTHER_TAG))).unwrap();
        let text = refusal_text(dir.path(), &me(0, Some(TAG)));
        assert!(
            text.contains("belongs to replica 2 of another cluster"),
            "{text}"
        );
        assert!(!text.contains("remove"), "{text}");
    }

    #[test]
    fn a_garbled_identity_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(IDENTITY_FILE);
        let cases: [(&[u8], &str); 7] = [
            (b"", "no `replica` line"),
            (b"replica 0\n", "no `cluster` line"),
            (
                b"replica zero\ncluster none\n",
                "line 1: \"zero\" is not a replica id",
            ),
            (
                b"replica 0\ncluster 12ab\n",
                "line 2: \"12ab\" is not a cluster tag",
            ),
            (
                b"replica 0\nreplica 0\ncluster none\n",
                "line 2: a second `replica` line",
            ),
            (
                b"replica 0\ncluster none\nview 7\n",
                "line 3: unexpected \"view 7\"",
            ),
            (b"replica 0\n\xff\xfe\n", "it is not text"),
        ];
        for (bytes, why) in cases {
            std::fs::write(&path, bytes).unwrap();
            let text = refusal_text(dir.path(), &me(0, Some(TAG)));
            assert!(
                text.starts_with(&format!(
                    "data directory {}: {} is not a readable identity file ({why}",
                    dir.path().display(),
                    path.display()
                )),
                "{text}"
            );
            assert!(
                text.contains(&format!("`replica 0` and `cluster {TAG}`")),
                "{text}"
            );
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "left as it was");
        }
        std::fs::write(&path, vec![b'#'; MAX_BYTES as usize + 1]).unwrap();
        let text = refusal_text(dir.path(), &me(0, Some(TAG)));
        assert!(text.contains("larger than 4096 bytes"), "{text}");
    }

    #[test]
    fn a_missing_file_is_adopted_and_a_cluster_is_recorded_once_a_secret_is_configured() {
        // A directory with state from an earlier version: adopted.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("wal-00000000000000000001.log"), b"x").unwrap();
        let zero = me(0, None);
        check(dir.path(), &zero, None)
            .unwrap()
            .record(false)
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap();
        assert!(text.ends_with("\nreplica 0\ncluster none\n"), "{text}");
        assert!(!dir.path().join(TEMP_FILE).exists());
        // Recorded without a secret: a secret configured later gives it its cluster...
        let with_secret = me(0, Some(TAG));
        check(dir.path(), &with_secret, None)
            .unwrap()
            .record(false)
            .unwrap();
        let text = std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap();
        assert_eq!(Identity::parse(&text), Ok(with_secret.clone()));
        // ... which a start without a secret accepts, and keeps.
        let checked = check(dir.path(), &zero, None).unwrap();
        assert!(checked.write.is_none());
        checked.record(false).unwrap();
        assert_eq!(
            Identity::parse(&std::fs::read_to_string(dir.path().join(IDENTITY_FILE)).unwrap()),
            Ok(with_secret)
        );
    }
}
