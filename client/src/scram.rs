//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash), both roles, sans-IO: the messages MQTT 5.0
//! carries as Authentication Data in CONNECT and AUTH (5.0 §4.12) when the Authentication Method is
//! [`METHOD`]. The client side is [`ClientExchange`]; the server side is [`ServerExchange`] over
//! stored [`Credentials`] (salt, iterations, StoredKey, ServerKey: never the password). Nonces are
//! given, not drawn here, so a run can be replayed.
//!
//! The exchange, as MQTT carries it: CONNECT (client-first) → AUTH 0x18 (server-first) → AUTH 0x18
//! (client-final) → CONNACK 0x00 (server-final), or a CONNACK 0x86 / DISCONNECT on a wrong proof.
//! Re-authentication runs the same messages starting from AUTH 0x19, ending with AUTH 0x00.
//! Channel binding is not used (`n,,`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ring::{digest, hmac, pbkdf2};

/// The Authentication Method name (the SASL mechanism's name).
pub const METHOD: &str = "SCRAM-SHA-256";

/// Iterations `Credentials::derive` uses unless told otherwise: RFC 7677's minimum.
pub const ITERATIONS_DEFAULT: u32 = 4096;

/// The most iterations accepted from a server (or a file): bounds what a hostile server can make a
/// client compute.
pub const ITERATIONS_MAX: u32 = 1_000_000;

/// The GS2 header of a client without channel binding, and its base64 (`c=` in client-final).
const GS2_HEADER: &str = "n,,";
const GS2_HEADER_BASE64: &str = "biws";

/// Why an exchange failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the server's nonce does not extend ours")]
    NonceMismatch,
    #[error("the proof does not match the stored key (wrong password)")]
    InvalidProof,
    #[error("the server's signature does not match (not the server that holds our credentials)")]
    InvalidServerSignature,
    #[error("the server refused: {0}")]
    ServerError(String),
    #[error("iteration count {0} out of range")]
    Iterations(u32),
}

/// What a server stores for a user (RFC 5802 §3): enough to verify a proof, not to forge one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl Credentials {
    /// Derives the stored form of `password` with `salt` and `iterations` (PBKDF2-HMAC-SHA-256).
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Credentials {
        let salted = salted_password(password, salt, iterations);
        Credentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&hmac_sha256(&salted, b"Client Key")),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Whether `password` is the one these credentials were derived from (for a plain CONNECT
    /// password checked against SCRAM credentials). Costs `iterations` rounds of PBKDF2.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        let salted = salted_password(password, &self.salt, self.iterations);
        let stored = sha256(&hmac_sha256(&salted, b"Client Key"));
        constant_time_eq(&stored, &self.stored_key)
    }

    /// The text form kept in a password file after `user:`:
    /// `$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY`, base64 fields.
    pub fn to_line(&self) -> String {
        format!(
            "$scram-sha-256${}${}${}${}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    /// Parses [`Credentials::to_line`]'s form (the part after `user:`).
    pub fn from_line(text: &str) -> Result<Credentials, ScramError> {
        let rest = text
            .strip_prefix("$scram-sha-256$")
            .ok_or(ScramError::Malformed("not $scram-sha-256$"))?;
        let fields: Vec<&str> = rest.split('$').collect();
        let [iterations, salt, stored, server] = fields[..] else {
            return Err(ScramError::Malformed(
                "want $scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY",
            ));
        };
        let iterations: u32 = iterations.parse().map_err(|_| ScramError::Malformed("iterations"))?;
        if iterations == 0 || iterations > ITERATIONS_MAX {
            return Err(ScramError::Iterations(iterations));
        }
        let key = |field: &str| -> Result<[u8; 32], ScramError> {
            let bytes = STANDARD.decode(field).map_err(|_| ScramError::Malformed("base64"))?;
            bytes
                .try_into()
                .map_err(|_| ScramError::Malformed("a key is not 32 bytes"))
        };
        Ok(Credentials {
            salt: STANDARD
                .decode(salt)
                .map_err(|_| ScramError::Malformed("salt base64"))?,
            iterations,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

/// The client's side of one exchange.
#[derive(Debug, Clone)]
pub struct ClientExchange {
    password: Vec<u8>,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<[u8; 32]>,
}

impl ClientExchange {
    /// Starts an exchange for `username`, with a client nonce (printable, no comma: base64 of
    /// random bytes is the usual choice).
    pub fn new(username: &str, password: &[u8], nonce: &str) -> ClientExchange {
        ClientExchange {
            password: password.to_vec(),
            client_first_bare: format!("n={},r={nonce}", escape(username)),
            nonce: nonce.to_string(),
            server_signature: None,
        }
    }

    /// The client-first message: the Authentication Data of CONNECT (or of AUTH 0x19).
    pub fn client_first(&self) -> Vec<u8> {
        format!("{GS2_HEADER}{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first message, answers with client-final (the next AUTH 0x18's data).
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let nonce = attribute(server_first, 'r').ok_or(ScramError::Malformed("no r="))?;
        if !nonce.starts_with(&self.nonce) || nonce.len() <= self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let salt = attribute(server_first, 's').ok_or(ScramError::Malformed("no s="))?;
        let salt = STANDARD
            .decode(salt)
            .map_err(|_| ScramError::Malformed("salt base64"))?;
        let iterations: u32 = attribute(server_first, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or(ScramError::Malformed("no i="))?;
        if iterations == 0 || iterations > ITERATIONS_MAX {
            return Err(ScramError::Iterations(iterations));
        }
        let without_proof = format!("c={GS2_HEADER_BASE64},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = salted_password(&self.password, &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let signature = hmac_sha256(&sha256(&client_key), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(signature).map(|(k, s)| k ^ s).collect();
        self.server_signature = Some(hmac_sha256(
            &hmac_sha256(&salted, b"Server Key"),
            auth_message.as_bytes(),
        ));
        Ok(format!("{without_proof},p={}", STANDARD.encode(proof)).into_bytes())
    }

    /// Checks the server-final message (the data of the CONNACK, or of AUTH 0x00): the server
    /// proves it holds our credentials too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let server_final = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        if let Some(error) = attribute(server_final, 'e') {
            return Err(ScramError::ServerError(error.to_string()));
        }
        let verifier = attribute(server_final, 'v').ok_or(ScramError::Malformed("no v="))?;
        let verifier = STANDARD
            .decode(verifier)
            .map_err(|_| ScramError::Malformed("v= base64"))?;
        let expected = self
            .server_signature
            .ok_or(ScramError::Malformed("server-final before server-first"))?;
        if constant_time_eq(&verifier, &expected) {
            Ok(())
        } else {
            Err(ScramError::InvalidServerSignature)
        }
    }
}

/// The server's side of one exchange, after the client-first message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerExchange {
    username: String,
    credentials: Credentials,
    /// False when the user is unknown: the exchange runs on made-up credentials and fails at the
    /// proof, so that a client cannot tell unknown users from wrong passwords.
    known: bool,
    auth_message_prefix: String,
    nonce: String,
}

/// The user name a client-first message names, to look its credentials up with.
pub fn client_first_username(client_first: &[u8]) -> Result<String, ScramError> {
    let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
    let bare = text.strip_prefix(GS2_HEADER).ok_or(ScramError::Malformed(
        "client-first must start with n,, (no channel binding, no authzid)",
    ))?;
    let name = attribute(bare, 'n').ok_or(ScramError::Malformed("no n="))?;
    unescape(name)
}

impl ServerExchange {
    /// Takes the client-first message and the user's credentials (`None`: unknown user; `decoy`
    /// gives made-up ones that fail), with the server's part of the nonce. Returns the exchange and
    /// the server-first message (the data of AUTH 0x18).
    pub fn start(
        client_first: &[u8],
        credentials: Option<Credentials>,
        decoy: impl FnOnce() -> Credentials,
        server_nonce: &str,
    ) -> Result<(ServerExchange, Vec<u8>), ScramError> {
        let username = client_first_username(client_first)?;
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let bare = &text[GS2_HEADER.len()..];
        let client_nonce = attribute(bare, 'r').ok_or(ScramError::Malformed("no r="))?;
        if client_nonce.is_empty() || client_nonce.contains(',') {
            return Err(ScramError::Malformed("empty client nonce"));
        }
        let known = credentials.is_some();
        let credentials = credentials.unwrap_or_else(decoy);
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&credentials.salt),
            credentials.iterations
        );
        let exchange = ServerExchange {
            username,
            credentials,
            known,
            auth_message_prefix: format!("{bare},{server_first}"),
            nonce,
        };
        Ok((exchange, server_first.into_bytes()))
    }

    pub fn username(&self) -> &str {
        &self.username
    }

    /// Checks the client-final message; on success returns the server-final message (the data of
    /// the CONNACK or of AUTH 0x00).
    pub fn finish(&self, client_final: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no p="))?;
        if attribute(without_proof, 'c') != Some(GS2_HEADER_BASE64) {
            return Err(ScramError::Malformed("c= must be biws (no channel binding)"));
        }
        if attribute(without_proof, 'r') != Some(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let proof = STANDARD.decode(proof).map_err(|_| ScramError::Malformed("p= base64"))?;
        let auth_message = format!("{},{without_proof}", self.auth_message_prefix);
        let signature = hmac_sha256(&self.credentials.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::InvalidProof);
        }
        let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
        let matches = constant_time_eq(&sha256(&client_key), &self.credentials.stored_key);
        if !matches || !self.known {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac_sha256(&self.credentials.server_key, auth_message.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)).into_bytes())
    }
}

/// Whether `a` and `b` are equal, in time that depends on their lengths only (for secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |difference, (x, y)| difference | (x ^ y)) == 0
}

/// Our client's side of the exchange as an [`AuthHandler`](crate::options::AuthHandler):
/// [`crate::ConnectOptions::scram_sha_256`] sets it up. It answers the server-first AUTH with the
/// client-final one. (The server-final message in the CONNACK is not checked by the client core.)
pub struct ScramAuthHandler {
    exchange: std::sync::Mutex<ClientExchange>,
}

impl ScramAuthHandler {
    pub fn new(exchange: ClientExchange) -> ScramAuthHandler {
        ScramAuthHandler {
            exchange: std::sync::Mutex::new(exchange),
        }
    }
}

impl crate::options::AuthHandler for ScramAuthHandler {
    fn on_auth(&self, auth: &mqtt_protocol::Auth) -> Result<mqtt_protocol::Auth, String> {
        let server_first = auth.properties.authentication_data.as_deref().unwrap_or_default();
        let mut exchange = self.exchange.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let client_final = exchange.client_final(server_first).map_err(|error| error.to_string())?;
        let mut properties = mqtt_protocol::Properties::default();
        properties.authentication_method = Some(METHOD.to_string());
        properties.authentication_data = Some(bytes::Bytes::from(client_final));
        Ok(mqtt_protocol::Auth {
            reason_code: mqtt_protocol::ReasonCode::CONTINUE_AUTHENTICATION,
            properties,
        })
    }
}

/// A fresh client nonce: base64 of 18 random bytes.
pub fn random_nonce() -> String {
    let mut bytes = [0u8; 18];
    // The system's generator failing is not recoverable here; a fixed nonce would still work,
    // only replayable: fall back to the time.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes[..16].copy_from_slice(&now.to_le_bytes());
    }
    STANDARD.encode(bytes)
}

fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut out = [0u8; 32];
    let iterations = std::num::NonZeroU32::new(iterations.max(1)).expect("at least 1");
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, iterations, salt, password, &mut out);
    out
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data);
    tag.as_ref().try_into().expect("SHA-256 is 32 bytes")
}

fn sha256(data: &[u8]) -> [u8; 32] {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The value of attribute `name` in a comma-separated SCRAM message.
fn attribute(message: &str, name: char) -> Option<&str> {
    message.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(name) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

/// SCRAM's saslname escaping (RFC 5802 §5.1): `,` as `=2C`, `=` as `=3D`.
fn escape(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

fn unescape(name: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        match rest.get(at..at + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad = escape in the user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3's example: user "user", password "pencil", its nonces, salt and iterations.
    #[test]
    fn the_rfc_7677_example_exchange_gives_its_proof_and_signature() {
        let mut client = ClientExchange::new("user", b"pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let client_final = client.client_final(server_first).unwrap();
        assert_eq!(
            String::from_utf8(client_final).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        client
            .verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert_eq!(
            client.verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Err(ScramError::InvalidServerSignature)
        );
    }

    #[test]
    fn the_server_accepts_the_right_password_and_refuses_a_wrong_one_or_an_unknown_user() {
        let stored = Credentials::derive(b"pencil", b"salt-of-16-bytes", 64);
        let decoy = || Credentials::derive(b"", b"decoy", 64);
        for (password, known, accepted) in [
            (&b"pencil"[..], true, true),
            (b"pencil!", true, false),
            (b"pencil", false, false),
        ] {
            let mut client = ClientExchange::new("a,b=c", password, "cnonce");
            let credentials = known.then(|| stored.clone());
            let (server, server_first) =
                ServerExchange::start(&client.client_first(), credentials, decoy, "snonce").unwrap();
            assert_eq!(server.username(), "a,b=c");
            let client_final = client.client_final(&server_first).unwrap();
            match server.finish(&client_final) {
                Ok(server_final) => {
                    assert!(accepted);
                    client.verify_server_final(&server_final).unwrap();
                }
                Err(error) => {
                    assert!(!accepted);
                    assert_eq!(error, ScramError::InvalidProof);
                }
            }
        }
    }

    #[test]
    fn stored_credentials_round_trip_through_their_line_and_verify_plain_passwords() {
        let stored = Credentials::derive(b"hunter2", b"0123456789abcdef", 128);
        let parsed = Credentials::from_line(&stored.to_line()).unwrap();
        assert_eq!(parsed, stored);
        assert!(parsed.verify_password(b"hunter2"));
        assert!(!parsed.verify_password(b"hunter3"));
        assert!(Credentials::from_line("$scram-sha-256$0$AA==$AA==$AA==").is_err());
        assert!(Credentials::from_line("$7$101$x$y").is_err());
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let decoy = || Credentials::derive(b"", b"d", 1);
        for first in [&b""[..], b"n,,", b"y,,n=u,r=x", b"n,,n=a=zz,r=x", b"n,,n=u,r=", b"\xff"] {
            assert!(ServerExchange::start(first, None, decoy, "s").is_err(), "{first:?}");
        }
        let (server, _) = ServerExchange::start(b"n,,n=u,r=x", None, decoy, "s").unwrap();
        for last in [
            &b""[..],
            b"c=biws,r=xs",
            b"c=biws,r=xs,p=!!",
            b"c=biws,r=other,p=AA==",
            b"c=eSws,r=xs,p=AA==",
        ] {
            assert!(server.finish(last).is_err(), "{last:?}");
        }
        let mut client = ClientExchange::new("u", b"p", "x");
        assert_eq!(client.client_final(b"r=y1,s=AA==,i=1"), Err(ScramError::NonceMismatch));
        assert_eq!(client.client_final(b"r=x1,s=AA==,i=0"), Err(ScramError::Iterations(0)));
    }
}
