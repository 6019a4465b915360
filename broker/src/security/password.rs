//! The password file: one `user:hash` per line, in mosquitto_passwd's formats (so a file that
//! tool wrote is read as is) and ours for SCRAM.
//!
//! | hash | what it is |
//! |---|---|
//! | `$7$ITERATIONS$SALT$HASH` | PBKDF2-HMAC-SHA-512, a 64-byte hash (mosquitto_passwd's default since 2.0) |
//! | `$6$SALT$HASH` | SHA-512 of the password then the salt (mosquitto_passwd before 2.0) |
//! | `$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY` | SCRAM-SHA-256 stored keys ([`Credentials`]): the user can also sign in with the SCRAM exchange |
//!
//! Salts and hashes are base64. Blank lines and lines starting with `#` are skipped. A user named
//! twice is an error (which line wins would be a guess).

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use mqtt_client::scram::{self, constant_time_eq, Credentials};
use ring::{digest, pbkdf2};

/// Iterations `mqtt-harness passwd` uses for `$7$` lines: mosquitto_passwd's own default.
pub const PBKDF2_SHA512_ITERATIONS_DEFAULT: u32 = 101;

/// One user's stored password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordHash {
    Pbkdf2Sha512 {
        iterations: u32,
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Sha512 {
        salt: Vec<u8>,
        hash: Vec<u8>,
    },
    Scram(Credentials),
}

impl PasswordHash {
    /// Hashes `password` as mosquitto_passwd does by default (`$7$`).
    pub fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> PasswordHash {
        PasswordHash::Pbkdf2Sha512 {
            iterations,
            salt: salt.to_vec(),
            hash: pbkdf2_sha512(password, salt, iterations).to_vec(),
        }
    }

    /// Whether `password` is this user's. Costs the hash's iterations: call it off the broker task.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Pbkdf2Sha512 { iterations, salt, hash } => {
                constant_time_eq(&pbkdf2_sha512(password, salt, *iterations), hash)
            }
            PasswordHash::Sha512 { salt, hash } => {
                let mut context = digest::Context::new(&digest::SHA512);
                context.update(password);
                context.update(salt);
                constant_time_eq(context.finish().as_ref(), hash)
            }
            PasswordHash::Scram(credentials) => credentials.verify_password(password),
        }
    }

    /// The SCRAM credentials, when this user has them.
    pub fn scram(&self) -> Option<&Credentials> {
        match self {
            PasswordHash::Scram(credentials) => Some(credentials),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<PasswordHash, String> {
        let base64 = |field: &str, what: &str| {
            STANDARD
                .decode(field)
                .map_err(|_| format!("the {what} is not valid base64"))
        };
        if text.starts_with("$scram-sha-256$") {
            return Credentials::from_line(text)
                .map(PasswordHash::Scram)
                .map_err(|error| error.to_string());
        }
        let fields: Vec<&str> = text.split('$').collect();
        match fields[..] {
            ["", "7", iterations, salt, hash] => {
                let iterations: u32 = iterations
                    .parse()
                    .ok()
                    .filter(|i| (1..=scram::ITERATIONS_MAX).contains(i))
                    .ok_or_else(|| format!("iteration count {iterations:?} out of range"))?;
                let salt = base64(salt, "salt")?;
                let hash = base64(hash, "hash")?;
                if hash.len() != 64 {
                    return Err("a $7$ hash is 64 bytes".into());
                }
                Ok(PasswordHash::Pbkdf2Sha512 { iterations, salt, hash })
            }
            ["", "6", salt, hash] => {
                let hash = base64(hash, "hash")?;
                if hash.len() != 64 {
                    return Err("a $6$ hash is 64 bytes".into());
                }
                Ok(PasswordHash::Sha512 {
                    salt: base64(salt, "salt")?,
                    hash,
                })
            }
            _ => Err("the hash is none of $7$ (PBKDF2-SHA512), $6$ (SHA512) or $scram-sha-256$".into()),
        }
    }
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PasswordHash::Pbkdf2Sha512 { iterations, salt, hash } => {
                write!(f, "$7${iterations}${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            PasswordHash::Sha512 { salt, hash } => write!(f, "$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash)),
            PasswordHash::Scram(credentials) => f.write_str(&credentials.to_line()),
        }
    }
}

fn pbkdf2_sha512(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 64] {
    let mut out = [0u8; 64];
    let iterations = NonZeroU32::new(iterations.max(1)).expect("at least 1");
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA512, iterations, salt, password, &mut out);
    out
}

/// A bad line, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// The users and their hashes, in file order by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PasswordFile {
    users: BTreeMap<String, PasswordHash>,
}

impl PasswordFile {
    pub fn parse(text: &str) -> Result<PasswordFile, FileError> {
        let mut users = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let error = |message: String| FileError {
                line: index + 1,
                message,
            };
            let (user, hash) = line.rsplit_once(':').ok_or_else(|| error("want user:hash".into()))?;
            if user.is_empty() {
                return Err(error("the user name is empty".into()));
            }
            let hash = PasswordHash::parse(hash).map_err(error)?;
            if users.insert(user.to_string(), hash).is_some() {
                return Err(error(format!("user {user:?} is named twice")));
            }
        }
        Ok(PasswordFile { users })
    }

    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user)
    }

    /// Adds or replaces `user`.
    pub fn set(&mut self, user: &str, hash: PasswordHash) {
        self.users.insert(user.to_string(), hash);
    }

    pub fn remove(&mut self, user: &str) -> bool {
        self.users.remove(user).is_some()
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

impl fmt::Display for PasswordFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (user, hash) in &self.users {
            writeln!(f, "{user}:{hash}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by mosquitto_passwd 2.0.11 (`mosquitto_passwd -b pw alice secret`).
    const MOSQUITTO_LINE: &str = "alice:$7$101$CEAZenIY90ehqGNP$Qrb6woKIsuSfrUmIGupXNLADZkDuRH1gDpxcc7/zsGBPTVzJB+jJA405M1sO7PzQyoGCXZzDVQ/aDMrnKNSp8w==";

    #[test]
    fn a_line_mosquitto_passwd_wrote_verifies_its_password_only() {
        let file = PasswordFile::parse(&format!("# users\n\n{MOSQUITTO_LINE}\n")).unwrap();
        let alice = file.get("alice").unwrap();
        assert!(alice.verify(b"secret"));
        assert!(!alice.verify(b"Secret"));
        assert!(file.get("bob").is_none());
        assert_eq!(file.to_string(), format!("{MOSQUITTO_LINE}\n"));
    }

    #[test]
    fn every_format_we_write_reads_back_and_verifies() {
        let mut file = PasswordFile::default();
        file.set("a", PasswordHash::pbkdf2_sha512(b"pa", b"0123456789ab", 7));
        file.set(
            "b",
            PasswordHash::Scram(Credentials::derive(b"pb", b"0123456789abcdef", 16)),
        );
        let mut context = digest::Context::new(&digest::SHA512);
        context.update(b"pc");
        context.update(b"salt");
        let hash = context.finish().as_ref().to_vec();
        file.set(
            "c",
            PasswordHash::Sha512 {
                salt: b"salt".to_vec(),
                hash,
            },
        );
        let read = PasswordFile::parse(&file.to_string()).unwrap();
        assert_eq!(read, file);
        for (user, password) in [("a", "pa"), ("b", "pb"), ("c", "pc")] {
            assert!(read.get(user).unwrap().verify(password.as_bytes()), "{user}");
            assert!(!read.get(user).unwrap().verify(b"wrong"), "{user}");
        }
        assert!(read.get("b").unwrap().scram().is_some());
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        for (text, line, fragment) in [
            ("alice\n", 1, "user:hash"),
            (&format!("{MOSQUITTO_LINE}\nbob:$5$x$y\n") as &str, 2, "none of"),
            ("# c\nbob:$7$0$AA==$AA==\n", 2, "out of range"),
            ("bob:$7$10$!!$AA==\n", 1, "base64"),
            (&format!("{MOSQUITTO_LINE}\n{MOSQUITTO_LINE}\n"), 2, "twice"),
            (":$6$AA==$AA==\n", 1, "empty"),
        ] {
            let error = PasswordFile::parse(text).unwrap_err();
            assert_eq!(error.line, line, "{text}");
            assert!(error.message.contains(fragment), "{error}");
        }
    }
}
