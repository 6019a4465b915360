#![allow(dead_code)] // each test binary that includes this file uses part of it
//! Test certificates, made by rcgen for each test: a CA, a server certificate for `localhost` and
//! 127.0.0.1, a client CA and client certificate, a certificate for another host and an expired
//! one, as PEM files in a directory removed when dropped. Shared by the broker's transport tests
//! and the command-line tests (which include this file by path).

use std::path::PathBuf;

use mqtt_client::transport::tls::ServerTlsOptions;
use mqtt_client::transport::TlsOptions;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A directory of PEM files for one test, readable by mosquitto after it drops to its own user.
pub struct Certificates {
    pub directory: PathBuf,
}

impl Certificates {
    /// A CA; a server certificate for `localhost` and 127.0.0.1 signed by it; a client CA and a
    /// client certificate; a certificate for another host; an expired one.
    pub fn make(test: &str) -> Certificates {
        let directory = std::env::temp_dir().join(format!("mqtt-harness-tls-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let certificates = Certificates { directory };
        let (ca, ca_key) = certificates.ca("ca", "test-ca");
        let (client_ca, client_ca_key) = certificates.ca("client-ca", "test-client-ca");
        let issuer = Issuer::new(ca, ca_key);
        let client_issuer = Issuer::new(client_ca, client_ca_key);
        certificates.leaf("server", &["localhost", "127.0.0.1"], &issuer, None);
        certificates.leaf("other-host", &["elsewhere.example"], &issuer, None);
        certificates.leaf("expired", &["localhost", "127.0.0.1"], &issuer, Some((2020, 2021)));
        certificates.leaf("client", &["client-1"], &client_issuer, None);
        certificates
    }

    fn ca(&self, name: &str, common_name: &str) -> (CertificateParams, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        let certificate = params.self_signed(&key).unwrap();
        self.write(&format!("{name}.pem"), &certificate.pem());
        (params, key)
    }

    fn leaf(&self, name: &str, names: &[&str], issuer: &Issuer<'_, KeyPair>, years: Option<(i32, i32)>) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names.iter().map(|name| name.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        if let Some((from, to)) = years {
            params.not_before = rcgen::date_time_ymd(from, 1, 1);
            params.not_after = rcgen::date_time_ymd(to, 1, 1);
        }
        let certificate = params.signed_by(&key, issuer).unwrap();
        self.write(&format!("{name}.pem"), &certificate.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.directory.join(name), text).unwrap();
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }

    pub fn server_tls(&self, name: &str, client_ca: bool) -> ServerTlsOptions {
        ServerTlsOptions {
            cert: self.path(&format!("{name}.pem")),
            key: self.path(&format!("{name}.key")),
            client_cafile: client_ca.then(|| self.path("client-ca.pem")),
            tls13_only: false,
        }
    }

    /// A client that trusts the test CA.
    pub fn client_tls(&self) -> TlsOptions {
        TlsOptions {
            cafile: Some(self.path("ca.pem")),
            ..TlsOptions::default()
        }
    }

    pub fn client_tls_with_certificate(&self) -> TlsOptions {
        TlsOptions {
            cert: Some(self.path("client.pem")),
            key: Some(self.path("client.key")),
            ..self.client_tls()
        }
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}
