//! A local certificate authority and one certificate per replica (`chat-admin new-tls DIR`
//! and `chat demo`): the files a `tls:` section names.
//!
//! The CA's private key is used once and never written: nobody can issue another
//! certificate that the cluster trusts. Adding a replica means a new `new-tls` for all.

use chat_core::config::{Config, TlsFiles};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// Years a new certificate is valid.
const YEARS: i32 = 10;

/// When a certificate is valid: from the first to the second date (year, month, day).
#[derive(Clone, Copy, Debug)]
pub struct Validity {
    pub from: (i32, u8, u8),
    pub until: (i32, u8, u8),
}

impl Validity {
    /// From January 1st of this year for ten years.
    pub fn standard() -> Validity {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Civil years from 1970 are close enough for a start date on January 1st.
        let year = 1970 + i32::try_from(secs / 31_556_952).unwrap_or(0);
        Validity {
            from: (year, 1, 1),
            until: (year + YEARS, 1, 1),
        }
    }
}

/// A certificate authority that lives in memory only.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Authority {
    pub fn new(validity: Validity) -> Result<Authority, String> {
        let mut params = CertificateParams::default();
        // A name of its own: a certificate from another cluster's CA is then an unknown
        // issuer, not a bad signature from an issuer of the same name.
        let tag: u32 = rand::random();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("chat cluster CA {tag:08x}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        set_validity(&mut params, validity);
        let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("signing the CA certificate: {e}"))?;
        Ok(Authority {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate (PEM).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `name` (its common name) valid for `hosts` (IP addresses or DNS
    /// names), for both ends of a link: PEM certificate and PEM private key.
    pub fn issue(
        &self,
        name: &str,
        hosts: &[String],
        validity: Validity,
    ) -> Result<(String, String), String> {
        let mut params = CertificateParams::new(hosts.to_vec())
            .map_err(|e| format!("certificate names {hosts:?}: {e}"))?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        set_validity(&mut params, validity);
        let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing the certificate of {name}: {e}"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let (y, m, d) = validity.from;
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = validity.until;
    params.not_after = date_time_ymd(y, m, d);
}

/// The `tls:` section that names the files [`create`] writes in `dir`.
pub fn files_in(dir: &Path) -> TlsFiles {
    let at = |name: &str| dir.join(name).display().to_string();
    TlsFiles {
        ca: at("ca.pem"),
        certificate: at("replica-{id}.pem"),
        key: at("replica-{id}.key"),
    }
}

/// The names replica `host` is reached by: its configured host, and `localhost` and
/// 127.0.0.1 when that is this machine.
fn names_of(host: &str) -> Vec<String> {
    let mut names = vec![host.to_owned()];
    if matches!(host, "127.0.0.1" | "localhost" | "::1") {
        for local in ["127.0.0.1", "localhost", "::1"] {
            if !names.iter().any(|n| n == local) {
                names.push(local.to_owned());
            }
        }
    }
    names
}

/// Writes a new CA (`ca.pem`) and, for every replica of `config`, `replica-<id>.pem` and
/// `replica-<id>.key` (readable by its owner only) into `dir`, created if needed. Refuses
/// to replace any existing file. Returns the files written.
pub fn create(dir: &Path, config: &Config) -> Result<Vec<PathBuf>, String> {
    let validity = Validity::standard();
    write(dir, &Authority::new(validity)?, config, validity)
}

/// [`create`] with a given CA (tests keep it to issue more certificates).
pub fn write(
    dir: &Path,
    ca: &Authority,
    config: &Config,
    validity: Validity,
) -> Result<Vec<PathBuf>, String> {
    let mut files = vec![(dir.join("ca.pem"), ca.pem().to_owned(), 0o644)];
    for r in &config.replicas {
        let (cert, key) = ca.issue(&format!("replica {}", r.id), &names_of(&r.host), validity)?;
        files.push((dir.join(format!("replica-{}.pem", r.id)), cert, 0o644));
        files.push((dir.join(format!("replica-{}.key", r.id)), key, 0o600));
    }
    if let Some((path, ..)) = files.iter().find(|(path, ..)| path.exists()) {
        return Err(format!(
            "{} exists: refusing to replace TLS files (replicas and clients may use them)",
            path.display()
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (path, text, mode) in &files {
        crate::secret::write_new(path, text, *mode)?;
    }
    Ok(files.into_iter().map(|(path, ..)| path).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chat_net::tls::{ClientTls, ServerTls};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_tls_files_load_as_a_replica_and_a_client_and_are_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::parse(crate::settings::BUILT_IN_CONFIG).unwrap();
        let written = create(dir.path(), &config).unwrap();
        assert_eq!(written.len(), 1 + 2 * config.replicas.len());
        let files = files_in(dir.path());
        for r in &config.replicas {
            ServerTls::load(&files, r.id).unwrap();
        }
        ClientTls::load(&files).unwrap();
        let key = std::fs::metadata(dir.path().join("replica-0.key")).unwrap();
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        let ca = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        let err = create(dir.path(), &config).unwrap_err();
        assert!(err.contains("ca.pem exists"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
            ca
        );
    }

    #[test]
    fn a_local_host_gets_every_local_name() {
        assert_eq!(names_of("127.0.0.1"), ["127.0.0.1", "localhost", "::1"]);
        assert_eq!(names_of("chat-1.example"), ["chat-1.example"]);
    }
}
