//! TLS for both sides, on rustls with the ring backend: what a client needs to reach `mqtts://`
//! and `wss://` brokers (a CA file, a client certificate and key, `--insecure`), what a server
//! needs to serve them (a certificate chain and key, a CA to require client certificates), and the
//! PEM loading both share. Errors name the file and what was wrong with it, in one line.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// The ALPN protocol id MQTT brokers register (IANA: `mqtt`).
pub const ALPN_MQTT: &[u8] = b"mqtt";

/// Where a client finds the CAs it trusts when no `--cafile` is given: the system bundle, as
/// OpenSSL does (Debian's path, or `SSL_CERT_FILE`).
const SYSTEM_CA_FILE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How a client reaches a broker over TLS, named as mosquitto_pub names the same options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CAs that may sign the broker's certificate (`--cafile`); the system bundle
    /// when absent.
    pub cafile: Option<PathBuf>,
    /// PEM certificate chain to present to a broker that asks for one (`--cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (`--key`).
    pub key: Option<PathBuf>,
    /// Accept any certificate the broker presents, for self-signed test brokers (`--insecure`).
    /// The connection is encrypted but not authenticated: anybody in the path can read it.
    pub insecure: bool,
}

/// Why TLS could not be set up, in one line that names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSetupError(pub String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// The process-wide choice of crypto: ring, whatever else is linked in.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// Every certificate of a PEM file, in order (a chain: the leaf first).
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| TlsSetupError(format!("{}: {error}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsSetupError(format!("{}: {error}", path.display())))?;
    if certificates.is_empty() {
        return Err(TlsSetupError(format!("{}: no PEM certificate in it", path.display())));
    }
    Ok(certificates)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => {
            TlsSetupError(format!("{}: no PEM private key in it", path.display()))
        }
        error => TlsSetupError(format!("{}: {error}", path.display())),
    })
}

/// A trust store of the CAs in `path`.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for certificate in load_certificates(path)? {
        roots
            .add(certificate)
            .map_err(|error| TlsSetupError(format!("{}: not a usable CA certificate: {error}", path.display())))?;
    }
    Ok(roots)
}

impl TlsOptions {
    /// The rustls configuration these options describe, offering ALPN `mqtt`.
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsSetupError> {
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsSetupError(format!("TLS: {error}")))?;
        let builder = if self.insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
        } else {
            let cafile = match &self.cafile {
                Some(cafile) => cafile.clone(),
                None => system_ca_file().ok_or_else(|| {
                    TlsSetupError(format!(
                        "no CA to trust: give --cafile FILE (no system bundle at {SYSTEM_CA_FILE}), \
                         or --insecure for a test broker"
                    ))
                })?,
            };
            builder.with_root_certificates(load_roots(&cafile)?)
        };
        let mut config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(load_certificates(cert)?, load_private_key(key)?)
                .map_err(|error| TlsSetupError(format!("{} and {}: {error}", cert.display(), key.display())))?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => return Err(TlsSetupError("--cert needs --key".into())),
            (None, Some(_)) => return Err(TlsSetupError("--key needs --cert".into())),
        };
        config.alpn_protocols = vec![ALPN_MQTT.to_vec()];
        Ok(Arc::new(config))
    }
}

fn system_ca_file() -> Option<PathBuf> {
    std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(SYSTEM_CA_FILE)))
        .filter(|path| path.is_file())
}

/// What a server presents and whom it lets in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerTlsOptions {
    /// PEM certificate chain, leaf first (`--cert`).
    pub cert: PathBuf,
    /// PEM private key of the leaf (`--key`).
    pub key: PathBuf,
    /// PEM CAs whose client certificates are required (`--cafile`); none: no client certificate
    /// is asked for.
    pub client_cafile: Option<PathBuf>,
    /// Refuse TLS 1.2 (`--tls-version tlsv1.3`).
    pub tls13_only: bool,
}

impl ServerTlsOptions {
    /// The rustls configuration: ALPN `mqtt` (a client that offers none is still served).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsSetupError> {
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|error| TlsSetupError(format!("TLS: {error}")))?;
        let builder = match &self.client_cafile {
            Some(cafile) => {
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(load_roots(cafile)?),
                    provider(),
                )
                .build()
                .map_err(|error| TlsSetupError(format!("{}: {error}", cafile.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(load_certificates(&self.cert)?, load_private_key(&self.key)?)
            .map_err(|error| TlsSetupError(format!("{} and {}: {error}", self.cert.display(), self.key.display())))?;
        config.alpn_protocols = vec![ALPN_MQTT.to_vec()];
        Ok(Arc::new(config))
    }
}

/// `--insecure`: accepts any certificate, but still checks that the handshake was signed by the
/// key of the certificate presented (so the session keys are the server's).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS failure as one line a user can act on: "TLS handshake with localhost:8883 failed:
/// invalid peer certificate: UnknownIssuer".
pub(crate) fn describe_handshake_error(error: io::Error, address: &str) -> io::Error {
    io::Error::new(error.kind(), format!("TLS handshake with {address} failed: {error}"))
}

/// The name to verify the broker's certificate against, and to send as SNI.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsSetupError(format!("`{host}` is not a valid TLS server name")))
}
