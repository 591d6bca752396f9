//! The cluster's shared secret file (`cluster_secret_file` in `config.yaml`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Random bytes in a new secret; stored as hex text, so the file holds twice as many bytes.
const SECRET_BYTES: usize = 32;

/// Writes a new random secret to `path` (hex text, readable by its owner only), creating the
/// parent directory. Refuses to replace an existing file: replicas holding the old secret
/// could no longer talk to each other.
pub fn create(path: &Path) -> Result<(), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let bytes: [u8; SECRET_BYTES] = rand::random();
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    write_new(path, &text, 0o600)
}

/// Creates `path` with permissions `mode` — never replacing an existing file — and writes and
/// syncs `text`: how the cluster secret and the TLS files are written.
pub fn write_new(path: &Path, text: &str, mode: u32) -> Result<(), String> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_secret_is_private_random_hex_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("x/a.secret"), dir.path().join("b.secret"));
        create(&a).unwrap();
        create(&b).unwrap();
        let text = std::fs::read_to_string(&a).unwrap();
        assert_eq!(text.len(), 2 * SECRET_BYTES);
        assert!(text.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(text, std::fs::read_to_string(&b).unwrap());
        let mode = std::fs::metadata(&a).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = create(&a).unwrap_err();
        assert!(err.contains("a.secret"), "{err}");
        assert_eq!(std::fs::read_to_string(&a).unwrap(), text);
    }
}
