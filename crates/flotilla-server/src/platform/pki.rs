//! The private CA: created on first start, it signs the server's certificate (renewed at
//! every start, so new names in `tls_names` apply) and every node's client certificate.
//!
//! Invariants: the CA key never leaves the data dir (mode 0600); a node certificate's subject
//! common name is its node id and its key is generated on the node (we sign a CSR); the server
//! accepts client certificates from this CA only, and the TLS layer admits connections
//! without one so that operators (token auth) share the port with agents (mTLS).

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::bootstrap::write_private;
use super::secret::random_bytes;

/// The CA and the server's own identity.
pub struct Pki {
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = random_bytes();
    bytes[0] &= 0x7f; // a positive DER integer
    SerialNumber::from_slice(&bytes)
}

impl Pki {
    /// Loads the CA from `dir` (`ca.pem`, `ca.key`) or creates it, then issues a fresh server
    /// certificate for `names`.
    pub fn load_or_create(dir: &Path, names: &[String]) -> anyhow::Result<Pki> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let (ca_pem, ca_key) = match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let pem = std::fs::read_to_string(&cert_path)
                    .with_context(|| format!("cannot read {}", cert_path.display()))?;
                let key_pem = std::fs::read_to_string(&key_path)
                    .with_context(|| format!("cannot read {}", key_path.display()))?;
                let key = KeyPair::from_pem(&key_pem).with_context(|| {
                    format!("{} is not a valid private key: restore it from backup", key_path.display())
                })?;
                (pem, key)
            }
            (false, false) => {
                let key = KeyPair::generate().context("cannot generate the CA key")?;
                let mut params = CertificateParams::default();
                let mut dn = DistinguishedName::new();
                dn.push(DnType::CommonName, "Flotilla private CA");
                dn.push(DnType::OrganizationName, "Flotilla");
                params.distinguished_name = dn;
                params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
                params.key_usages =
                    vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
                params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
                params.not_after = OffsetDateTime::now_utc() + Duration::days(365 * 20);
                params.serial_number = Some(serial());
                let cert = params.self_signed(&key).context("cannot self-sign the CA")?;
                write_private(&key_path, key.serialize_pem().as_bytes())?;
                std::fs::write(&cert_path, cert.pem())
                    .with_context(|| format!("cannot write {}", cert_path.display()))?;
                (cert.pem(), key)
            }
            _ => bail!(
                "the data dir {} holds only one of ca.pem and ca.key: restore the missing file, or start from an empty data dir",
                dir.display()
            ),
        };
        let ca_der =
            CertificateDer::from_pem_slice(ca_pem.as_bytes()).context("ca.pem is not a valid PEM certificate")?;
        let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).context("ca.pem is not a usable CA certificate")?;

        let server_key = KeyPair::generate().context("cannot generate the server key")?;
        let mut params = CertificateParams::new(Vec::<String>::new()).context("server certificate parameters")?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "flotilla server");
        params.distinguished_name = dn;
        for name in names {
            params.subject_alt_names.push(match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    name.as_str()
                        .try_into()
                        .with_context(|| format!("`{name}` is not a valid DNS name for tls_names"))?,
                ),
            });
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        params.serial_number = Some(serial());
        let server_cert = params.signed_by(&server_key, &issuer).context("cannot sign the server certificate")?;
        Ok(Pki {
            ca_pem,
            ca_der,
            issuer,
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// Signs a node's CSR. Whatever the CSR asks for, the certificate says only: client
    /// authentication, subject CN = the node id.
    pub fn sign_node_csr(&self, csr_pem: &str, node_id: &str) -> Result<(String, Vec<u8>), String> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| format!("the certificate signing request is not valid: {e}"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = OffsetDateTime::now_utc() - Duration::hours(1);
        params.not_after = OffsetDateTime::now_utc() + Duration::days(365 * 5);
        params.serial_number = Some(serial());
        let request = CertificateSigningRequestParams { params, public_key: csr.public_key };
        let cert = request.signed_by(&self.issuer).map_err(|e| format!("cannot sign the node certificate: {e}"))?;
        Ok((cert.pem(), cert.der().to_vec()))
    }

    /// TLS for the one listening port: HTTP/2 and HTTP/1.1, client certificates optional but,
    /// when presented, verified against our CA.
    pub fn server_tls_config(&self) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).context("cannot trust our own CA")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .context("cannot build the client certificate verifier")?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.server_cert.clone(), self.ca_der.clone()], key)
            .context("cannot use the server certificate")?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The node id a client certificate names (its subject CN).
pub fn node_id_of(cert_der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}
