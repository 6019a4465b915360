//! What a client asks for when it connects, and how it behaves: every MQTT 5.0 CONNECT option
//! (clean start, session expiry, receive maximum, maximum packet size, topic alias maximum,
//! request response / problem information, user properties, will with properties and delay,
//! credentials, an AUTH exchange hook), the client's own bounds (timeouts, queue capacities) and
//! reconnect policy; and broker URLs.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_protocol::{Auth, Connect, Properties, PropertyFields, ProtocolVersion, QoS, Will};

/// The transport a URL names: TCP, TLS, WebSocket over TCP, WebSocket over TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Mqtt,
    Mqtts,
    Ws,
    Wss,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }
}

/// A broker address such as `mqtt://127.0.0.1:1883` (port defaults per scheme), with optional
/// credentials as `mqtt://user:password@host:port` (percent-encoding is not decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub scheme: Scheme,
    /// The user name before `@`, if any.
    pub username: Option<String>,
    /// The password after `user:`, if any.
    pub password: Option<String>,
    /// A host name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
    /// The path of a WebSocket URL (`/mqtt` when absent); empty for other schemes.
    pub path: String,
}

/// Why a URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("`{0}` has no scheme: write it as mqtt://host:port")]
    MissingScheme(String),
    #[error("unknown scheme `{0}`: use mqtt://, mqtts://, ws:// or wss://")]
    UnknownScheme(String),
    #[error("`{0}` has no host")]
    MissingHost(String),
    #[error("`{0}` has an invalid port")]
    InvalidPort(String),
}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(url: &str) -> Result<BrokerUrl, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::MissingScheme(url.to_owned()))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" | "tcp" => Scheme::Mqtt,
            "mqtts" | "ssl" => Scheme::Mqtts,
            "ws" => Scheme::Ws,
            "wss" => Scheme::Wss,
            _ => return Err(UrlError::UnknownScheme(scheme.to_owned())),
        };
        let (authority, path) = match rest.find('/') {
            Some(index) => (&rest[..index], &rest[index..]),
            None => (rest, ""),
        };
        let (userinfo, authority) = match authority.rsplit_once('@') {
            Some((userinfo, authority)) => (Some(userinfo), authority),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            Some(userinfo) => match userinfo.split_once(':') {
                Some((user, password)) => (Some(user.to_owned()), Some(password.to_owned())),
                None => (Some(userinfo.to_owned()), None),
            },
            None => (None, None),
        };
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| UrlError::MissingHost(url.to_owned()))?;
            (host, after.strip_prefix(':'))
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost(url.to_owned()));
        }
        let port = match port {
            Some(port) => port.parse().map_err(|_| UrlError::InvalidPort(url.to_owned()))?,
            None => scheme.default_port(),
        };
        let path = match scheme {
            Scheme::Ws | Scheme::Wss if path.is_empty() => "/mqtt".to_owned(),
            Scheme::Ws | Scheme::Wss => path.to_owned(),
            Scheme::Mqtt | Scheme::Mqtts => String::new(),
        };
        Ok(BrokerUrl {
            scheme,
            username,
            password,
            host: host.to_owned(),
            port,
            path,
        })
    }
}

impl BrokerUrl {
    /// `host:port`, bracketing an IPv6 host, as a socket address string.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme.name(), self.authority(), self.path)
    }
}

/// The will: published by the server if the connection ends without a normal DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// 5.0 only: Will Delay Interval, Message Expiry, Content Type, Response Topic, Correlation
    /// Data, Payload Format Indicator, User Properties.
    pub properties: Properties,
}

/// Answers the server's AUTH packets during enhanced authentication (5.0 §4.12). Return the AUTH
/// to send back, or an error message to abandon the connection.
pub trait AuthHandler: Send + Sync + 'static {
    fn on_auth(&self, auth: &Auth) -> Result<Auth, String>;
}

/// Reconnect with bounded exponential backoff: `delay_initial`, doubled after every failed attempt,
/// never above `delay_max`; give up after `attempts_max` consecutive failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub delay_initial: Duration,
    pub delay_max: Duration,
    pub attempts_max: u32,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        ReconnectPolicy {
            delay_initial: Duration::from_millis(100),
            delay_max: Duration::from_secs(10),
            attempts_max: 20,
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt `attempt` (0-based) after a loss.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.delay_initial.saturating_mul(factor).min(self.delay_max)
    }
}

/// How a client connects and behaves. `ConnectOptions::new("id")` gives 5.0, clean start, keep
/// alive 60 s and bounded defaults for everything else.
#[derive(Clone)]
pub struct ConnectOptions {
    pub version: ProtocolVersion,
    /// May be empty: a 5.0 server then assigns one, which the client adopts.
    pub client_id: String,
    /// Clean Start in 5.0, Clean Session in 3.1.1.
    pub clean_start: bool,
    /// 0 disables keep alive. The server's Server Keep Alive replaces it (5.0 MQTT-3.2.2-21).
    pub keep_alive_s: u16,
    pub session_expiry_interval_s: Option<u32>,
    /// How many QoS 1/2 PUBLISH packets the client accepts unacknowledged (5.0).
    pub receive_maximum: Option<u16>,
    pub maximum_packet_size: Option<u32>,
    /// How many topic aliases the server may use towards the client (5.0).
    pub topic_alias_maximum: Option<u16>,
    pub request_response_information: Option<bool>,
    pub request_problem_information: Option<bool>,
    pub user_properties: Vec<(String, String)>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub auth_handler: Option<Arc<dyn AuthHandler>>,
    pub will: Option<LastWill>,
    pub user_name: Option<String>,
    pub password: Option<Bytes>,

    /// Use topic aliases for outgoing PUBLISH packets when the server allows them (5.0). Aliases
    /// are assigned afresh on every connection and never relied on across connections.
    pub outgoing_topic_aliases: bool,
    /// The client's own limit on unacknowledged outgoing QoS 1/2 messages; the server's Receive
    /// Maximum may lower it further.
    pub inflight_count_max: u16,
    /// Publish requests waiting for a free slot (or for a connection); beyond it, publish fails.
    pub pending_count_max: usize,
    /// Deadline for the CONNACK after the CONNECT is sent.
    pub connect_timeout: Duration,
    /// Deadline for the PINGRESP after a PINGREQ: a server silent that long is declared dead.
    pub ping_timeout: Duration,
    /// Deadline for a SUBACK, UNSUBACK or a publish's acknowledgement.
    pub request_timeout: Duration,
    /// Capacity of the command queue (application to connection task) and of the event queue.
    pub queue_capacity: usize,
    /// Reconnect automatically after a connection is lost; `None` ends the client instead.
    pub reconnect: Option<ReconnectPolicy>,
    /// CA file, client certificate, `--insecure`: used by [`crate::Client::connect`] for mqtts://
    /// and wss:// URLs.
    pub tls: crate::transport::TlsOptions,
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("version", &self.version)
            .field("client_id", &self.client_id)
            .field("clean_start", &self.clean_start)
            .field("keep_alive_s", &self.keep_alive_s)
            .field("session_expiry_interval_s", &self.session_expiry_interval_s)
            .field("will", &self.will.as_ref().map(|will| &will.topic))
            .field("user_name", &self.user_name)
            .field("reconnect", &self.reconnect)
            .finish_non_exhaustive()
    }
}

impl ConnectOptions {
    pub fn new(client_id: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            version: ProtocolVersion::V5,
            client_id: client_id.into(),
            clean_start: true,
            keep_alive_s: 60,
            session_expiry_interval_s: None,
            receive_maximum: None,
            maximum_packet_size: None,
            topic_alias_maximum: None,
            request_response_information: None,
            request_problem_information: None,
            user_properties: Vec::new(),
            authentication_method: None,
            authentication_data: None,
            auth_handler: None,
            will: None,
            user_name: None,
            password: None,
            outgoing_topic_aliases: false,
            inflight_count_max: 1024,
            pending_count_max: 65_536,
            connect_timeout: Duration::from_secs(10),
            ping_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            queue_capacity: 4096,
            reconnect: None,
            tls: crate::transport::TlsOptions::default(),
        }
    }

    pub fn version(mut self, version: ProtocolVersion) -> Self {
        self.version = version;
        self
    }

    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    pub fn keep_alive_s(mut self, keep_alive_s: u16) -> Self {
        self.keep_alive_s = keep_alive_s;
        self
    }

    pub fn session_expiry_interval_s(mut self, seconds: u32) -> Self {
        self.session_expiry_interval_s = Some(seconds);
        self
    }

    pub fn will(mut self, will: LastWill) -> Self {
        self.will = Some(will);
        self
    }

    /// Enhanced authentication with SCRAM-SHA-256 (5.0 §4.12) as `user_name` / `password`: the
    /// CONNECT carries the client-first message, and the server's challenge is answered.
    pub fn scram_sha_256(mut self, user_name: &str, password: &[u8]) -> Self {
        let exchange = crate::scram::ClientExchange::new(user_name, password, &crate::scram::random_nonce());
        self.authentication_method = Some(crate::scram::METHOD.to_string());
        self.authentication_data = Some(Bytes::from(exchange.client_first()));
        self.auth_handler = Some(Arc::new(crate::scram::ScramAuthHandler::new(exchange)));
        self
    }

    pub fn credentials(mut self, user_name: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.user_name = Some(user_name.into());
        self.password = Some(password.into());
        self
    }

    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Whether the session outlives the connection, so that state is kept across a reconnect:
    /// Clean Session 0 in 3.1.1; a non-zero Session Expiry Interval in 5.0 (5.0 §3.1.2.11.2).
    pub fn session_persists(&self) -> bool {
        match self.version {
            ProtocolVersion::V5 => self.session_expiry_interval_s.unwrap_or(0) > 0,
            ProtocolVersion::V3_1 | ProtocolVersion::V3_1_1 => !self.clean_start,
        }
    }

    /// The CONNECT packet these options describe.
    pub fn to_connect(&self) -> Connect {
        let v5 = self.version.is_v5();
        let properties = if v5 {
            Properties::from(PropertyFields {
                session_expiry_interval_s: self.session_expiry_interval_s,
                receive_maximum: self.receive_maximum,
                maximum_packet_size: self.maximum_packet_size,
                topic_alias_maximum: self.topic_alias_maximum,
                request_response_information: self.request_response_information,
                request_problem_information: self.request_problem_information,
                user_properties: self.user_properties.clone(),
                authentication_method: self.authentication_method.clone(),
                authentication_data: self.authentication_data.clone(),
                ..PropertyFields::default()
            })
        } else {
            Properties::default()
        };
        Connect {
            protocol: self.version,
            clean_start: self.clean_start,
            keep_alive_s: self.keep_alive_s,
            properties,
            client_id: self.client_id.clone(),
            will: self.will.as_ref().map(|will| Will {
                topic: will.topic.clone(),
                payload: will.payload.clone(),
                qos: will.qos,
                retain: will.retain,
                properties: if v5 {
                    will.properties.clone()
                } else {
                    Properties::default()
                },
            }),
            user_name: self.user_name.clone(),
            password: self.password.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_carries_credentials_before_the_host_and_never_shows_them() {
        let url: BrokerUrl = "mqtt://alice:s3cret@127.0.0.1:1884".parse().expect("a valid URL");
        assert_eq!(url.username.as_deref(), Some("alice"));
        assert_eq!(url.password.as_deref(), Some("s3cret"));
        assert_eq!(url.authority(), "127.0.0.1:1884");
        assert_eq!(url.to_string(), "mqtt://127.0.0.1:1884", "no password in messages");
        let url: BrokerUrl = "mqtt://bob@localhost".parse().expect("a valid URL");
        assert_eq!((url.username.as_deref(), url.password), (Some("bob"), None));
        assert_eq!(url.port, 1883);
        let url: BrokerUrl = "mqtt://localhost".parse().expect("a valid URL");
        assert_eq!((url.username, url.password), (None, None));
    }
}
