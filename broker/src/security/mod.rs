//! Who may connect and what they may do: anonymous access on or off, a password file
//! ([`password`], mosquitto_passwd's formats), an ACL file ([`acl`]), the TLS client certificate's
//! name as the user name, and SCRAM-SHA-256 enhanced authentication (5.0 §4.12) for users whose
//! password file line holds SCRAM keys.
//!
//! [`Security`] is the policy the core consults; it is immutable and shared (`Arc`): a reload
//! (SIGHUP) builds a new one and hands it to the running broker ([`crate::server::ServerOptions`]),
//! so connections stay up and the next CONNECT, SUBSCRIBE, PUBLISH or delivery follows the new
//! files. Checking a password costs a hash: the server runs it on tokio's blocking pool, never on
//! the broker task; the sans-IO core checks inline only when it is driven directly (simulation,
//! fuzzing).
//!
//! Answers (5.0 / 3.1.1): a wrong user name or password, or a user not in the file, CONNACK 0x86 /
//! 0x04; no user name where anonymous access is off, or no certificate where its name is the user
//! name, 0x87 / 0x05. Denied SUBSCRIBE filters get 0x87 / 0x80 in the SUBACK; a denied QoS 1 or 2
//! PUBLISH gets PUBACK / PUBREC 0x87 in 5.0 and is acknowledged as usual and dropped in 3.1.1,
//! which has no negative acknowledgement; a denied QoS 0 PUBLISH is dropped. A message a client may
//! not read is not delivered to it (retained ones included); a will whose topic its client may not
//! publish to is dropped when it would be published.

pub mod acl;
pub mod password;

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use mqtt_client::scram::Credentials;
use mqtt_protocol::{Connect, ReasonCode};
use ring::hmac;

pub use acl::{Acl, Action};
pub use password::{FileError, PasswordFile, PasswordHash};

/// The policy. `Security::default()` lets everybody do everything (no files, anonymous on).
#[derive(Debug, Clone)]
pub struct Security {
    /// Clients without a user name (and, without a password file, every client) may connect.
    pub allow_anonymous: bool,
    pub passwords: Option<PasswordFile>,
    pub acl: Option<Acl>,
    /// The TLS client certificate's name (its subject's Common Name) is the user name, and the
    /// certificate its proof: no password is asked for. A client without a certificate is refused.
    pub use_identity_as_username: bool,
    /// Keys the server's SCRAM nonces and the made-up salts of unknown users.
    nonce_key: [u8; 32],
}

impl Default for Security {
    fn default() -> Self {
        Security {
            allow_anonymous: true,
            passwords: None,
            acl: None,
            use_identity_as_username: false,
            nonce_key: [0; 32],
        }
    }
}

/// Where a [`Security`] comes from: what `--password-file`, `--acl-file`, `--allow-anonymous` and
/// `--use-identity-as-username` (or the config file) say. Kept to reload the files on SIGHUP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SecurityFiles {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    /// `None`: on without a password file, off with one (mosquitto's default since 2.0 is off
    /// whenever a listener has no other means; we keep a plain broker open).
    pub allow_anonymous: Option<bool>,
    pub use_identity_as_username: bool,
}

/// A file that could not be read or parsed, with its path and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for LoadError {}

impl SecurityFiles {
    /// Reads and parses the files (the I/O side: the CLI at start and on SIGHUP).
    pub fn load(&self) -> Result<Security, LoadError> {
        fn read<T>(path: &Path, parse: impl FnOnce(&str) -> Result<T, FileError>) -> Result<T, LoadError> {
            let text = std::fs::read_to_string(path).map_err(|error| LoadError {
                path: path.to_path_buf(),
                line: None,
                message: format!("cannot read it: {error}"),
            })?;
            parse(&text).map_err(|error| LoadError {
                path: path.to_path_buf(),
                line: Some(error.line),
                message: error.message,
            })
        }
        let passwords = self
            .password_file
            .as_deref()
            .map(|path| read(path, PasswordFile::parse))
            .transpose()?;
        let acl = self
            .acl_file
            .as_deref()
            .map(|path| read(path, Acl::parse))
            .transpose()?;
        let mut nonce_key = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce_key).map_err(|_| LoadError {
            path: PathBuf::new(),
            line: None,
            message: "the system's random number generator failed".into(),
        })?;
        Ok(Security {
            allow_anonymous: self.allow_anonymous.unwrap_or(passwords.is_none()),
            passwords,
            acl,
            use_identity_as_username: self.use_identity_as_username,
            nonce_key,
        })
    }
}

impl Security {
    /// Keys the SCRAM nonces with `key` (a fixed key makes a simulated run replayable).
    pub fn with_nonce_key(mut self, key: [u8; 32]) -> Security {
        self.nonce_key = key;
        self
    }

    /// The hash to check this CONNECT's password against, when there is one to check (a user in
    /// the password file, a password, no enhanced authentication). The server checks it off the
    /// broker task and hands the core the verdict.
    pub fn password_to_check<'a>(&'a self, connect: &'a Connect) -> Option<(&'a PasswordHash, &'a [u8])> {
        if self.use_identity_as_username || connect.properties.authentication_method.is_some() {
            return None;
        }
        let hash = self.passwords.as_ref()?.get(connect.user_name.as_deref()?)?;
        Some((hash, connect.password.as_deref()?))
    }

    /// Who the CONNECT is (its user name, or none), or the 5.0 code that refuses it. `checked` is
    /// the verdict on the password when the server already checked it; `None`: check it here.
    pub fn authenticate(
        &self,
        connect: &Connect,
        certificate_name: Option<&str>,
        checked: Option<bool>,
    ) -> Result<Option<String>, ReasonCode> {
        if self.use_identity_as_username {
            return certificate_name
                .map(|name| Some(name.to_string()))
                .ok_or(ReasonCode::NOT_AUTHORIZED);
        }
        let Some(username) = connect.user_name.as_deref() else {
            return if self.allow_anonymous {
                Ok(None)
            } else {
                Err(ReasonCode::NOT_AUTHORIZED)
            };
        };
        if self.passwords.is_none() {
            return if self.allow_anonymous {
                Ok(Some(username.to_string()))
            } else {
                Err(ReasonCode::NOT_AUTHORIZED)
            };
        }
        let verified = match self.password_to_check(connect) {
            Some((hash, password)) => checked.unwrap_or_else(|| hash.verify(password)),
            None => false,
        };
        if verified {
            Ok(Some(username.to_string()))
        } else {
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        }
    }

    /// Whether the client may publish to / receive from `topic`.
    pub fn allows(&self, username: Option<&str>, client_id: &str, action: Action, topic: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.allows(username, client_id, action, topic))
    }

    /// Whether the client may subscribe to `filter` (see [`acl`]).
    pub fn allows_subscribe(&self, username: Option<&str>, client_id: &str, filter: &str) -> bool {
        self.acl
            .as_ref()
            .is_none_or(|acl| acl.allows_subscribe(username, client_id, filter))
    }

    /// Whether delivery needs a check per message (an ACL is loaded).
    pub fn filters_delivery(&self) -> bool {
        self.acl.is_some()
    }

    /// Whether SCRAM-SHA-256 is offered (a password file is loaded; users without SCRAM keys fail
    /// the exchange like unknown users).
    pub fn offers_scram(&self) -> bool {
        self.passwords.is_some() && !self.use_identity_as_username
    }

    /// `user`'s SCRAM keys, if the password file has them.
    pub fn scram_credentials(&self, user: &str) -> Option<Credentials> {
        self.passwords.as_ref()?.get(user)?.scram().cloned()
    }

    /// Made-up SCRAM keys for a user without real ones: the same salt every time for the same
    /// name (a probing client sees no difference from a real user), and no PBKDF2 to compute.
    pub fn scram_decoy(&self, user: &str) -> Credentials {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.nonce_key);
        let tag = |label: &str| -> [u8; 32] {
            let tag = hmac::sign(&key, format!("{label}\0{user}").as_bytes());
            tag.as_ref().try_into().expect("SHA-256 is 32 bytes")
        };
        Credentials {
            salt: tag("salt")[..16].to_vec(),
            iterations: mqtt_client::scram::ITERATIONS_DEFAULT,
            stored_key: tag("stored"),
            server_key: tag("server"),
        }
    }

    /// The server's part of SCRAM nonce number `counter`.
    pub fn scram_nonce(&self, counter: u64) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.nonce_key);
        let tag = hmac::sign(&key, &counter.to_be_bytes());
        STANDARD_NO_PAD.encode(&tag.as_ref()[..18])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use mqtt_protocol::ProtocolVersion;

    fn connect(username: Option<&str>, password: Option<&str>) -> Connect {
        Connect {
            user_name: username.map(str::to_string),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            protocol: ProtocolVersion::V5,
            client_id: "c".into(),
            ..Connect::default()
        }
    }

    #[test]
    fn authentication_answers_each_case_with_its_code() {
        let mut file = PasswordFile::default();
        file.set("alice", PasswordHash::pbkdf2_sha512(b"secret", b"salt", 3));
        let closed = Security {
            allow_anonymous: false,
            passwords: Some(file),
            ..Security::default()
        };
        let bad = Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD);
        assert_eq!(
            closed.authenticate(&connect(Some("alice"), Some("secret")), None, None),
            Ok(Some("alice".into()))
        );
        assert_eq!(
            closed.authenticate(&connect(Some("alice"), Some("nope")), None, None),
            bad
        );
        assert_eq!(closed.authenticate(&connect(Some("alice"), None), None, None), bad);
        assert_eq!(
            closed.authenticate(&connect(Some("eve"), Some("secret")), None, None),
            bad
        );
        assert_eq!(
            closed.authenticate(&connect(None, None), None, None),
            Err(ReasonCode::NOT_AUTHORIZED)
        );
        // The server's verdict stands for the hash.
        assert_eq!(
            closed.authenticate(&connect(Some("alice"), Some("nope")), None, Some(true)),
            Ok(Some("alice".into()))
        );
        let open = Security {
            allow_anonymous: true,
            ..closed.clone()
        };
        assert_eq!(open.authenticate(&connect(None, None), None, None), Ok(None));
        assert_eq!(open.authenticate(&connect(Some("eve"), Some("x")), None, None), bad);
        let by_certificate = Security {
            use_identity_as_username: true,
            ..closed
        };
        assert_eq!(
            by_certificate.authenticate(&connect(None, None), Some("device-1"), None),
            Ok(Some("device-1".into()))
        );
        assert_eq!(
            by_certificate.authenticate(&connect(Some("alice"), Some("secret")), None, None),
            Err(ReasonCode::NOT_AUTHORIZED)
        );
        assert_eq!(
            Security::default().authenticate(&connect(Some("x"), Some("y")), None, None),
            Ok(Some("x".into()))
        );
    }

    #[test]
    fn files_load_with_path_and_line_in_errors() {
        let dir = std::env::temp_dir().join(format!("mqtt-harness-security-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let passwords = dir.join("passwords");
        std::fs::write(&passwords, "alice:$7$101$AA==$AA==\n").unwrap();
        let files = SecurityFiles {
            password_file: Some(passwords.clone()),
            ..SecurityFiles::default()
        };
        let error = files.load().unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{}:1: a $7$ hash is 64 bytes", passwords.display())
        );
        let missing = SecurityFiles {
            acl_file: Some(dir.join("none")),
            ..SecurityFiles::default()
        };
        assert!(missing.load().unwrap_err().to_string().contains("cannot read it"));
        std::fs::write(&passwords, "").unwrap();
        let security = files.load().unwrap();
        assert!(
            !security.allow_anonymous,
            "a password file turns anonymous access off by default"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
