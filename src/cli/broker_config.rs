//! `mqtt-harness broker --config FILE`: everything the broker's flags say, in YAML. Keys are the
//! flags' names with `_` for `-`; a flag given on the command line wins over the file. Relative
//! paths are relative to the file's folder. An unknown key, a wrong type or a bad value is an
//! error with `file:line:column`.
//!
//! ```yaml
//! listen: [mqtt://0.0.0.0:1883, mqtts://0.0.0.0:8883, wss://0.0.0.0:8084/mqtt]
//! tls:
//!   cert: server.pem
//!   key: server.key
//!   cafile: clients-ca.pem        # require client certificates
//!   tls_version: tlsv1.2
//! security:
//!   password_file: passwords       # SIGHUP reloads it, and the ACL
//!   acl_file: acl
//!   allow_anonymous: false
//!   use_identity_as_username: false
//! sys_interval: 10
//! limits:
//!   max_connections: 10000
//!   max_keep_alive: 300
//!   no_shared_subscriptions: true
//! ```

use std::path::{Path, PathBuf};

use mqtt_broker::listener::ListenSpec;
use serde::Deserialize;

use super::broker::{Args, LimitArgs};

/// The largest config file read.
const FILE_BYTES_MAX: u64 = 1024 * 1024;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    pub listen: Vec<String>,
    pub tls: TlsSection,
    pub security: SecuritySection,
    pub sys_interval: Option<u64>,
    pub limits: LimitArgs,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub cafile: Option<PathBuf>,
    pub tls_version: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecuritySection {
    pub password_file: Option<PathBuf>,
    pub acl_file: Option<PathBuf>,
    pub allow_anonymous: Option<bool>,
    pub use_identity_as_username: bool,
}

/// Reads `path` and fills in what the command line left out. The error is one line:
/// `file:line:column: what is wrong`.
pub fn apply(path: &Path, args: &mut Args) -> Result<(), String> {
    let text = read(path)?;
    let file = parse(path, &text)?;
    let folder = path.parent().unwrap_or(Path::new("."));
    let resolve = |file: Option<PathBuf>| file.map(|file| folder.join(file));
    if args.listen.is_empty() {
        for listen in &file.listen {
            let spec: ListenSpec = listen
                .parse()
                .map_err(|error| format!("{}: listen {listen:?}: {error}", path.display()))?;
            args.listen.push(spec);
        }
    }
    args.cert = args.cert.take().or(resolve(file.tls.cert));
    args.key = args.key.take().or(resolve(file.tls.key));
    args.cafile = args.cafile.take().or(resolve(file.tls.cafile));
    if args.tls_version.is_none() {
        args.tls_version = match file.tls.tls_version.as_deref() {
            None => None,
            Some(version @ ("tlsv1.2" | "tlsv1.3")) => Some(version.to_string()),
            Some(other) => {
                return Err(format!(
                    "{}: tls.tls_version {other:?}: use tlsv1.2 or tlsv1.3",
                    path.display()
                ))
            }
        };
    }
    let security = &mut args.security;
    security.password_file = security.password_file.take().or(resolve(file.security.password_file));
    security.acl_file = security.acl_file.take().or(resolve(file.security.acl_file));
    security.allow_anonymous = security.allow_anonymous.or(file.security.allow_anonymous);
    security.use_identity_as_username |= file.security.use_identity_as_username;
    args.sys_interval = args.sys_interval.or(file.sys_interval);
    args.limits
        .fill_from(file.limits)
        .map_err(|error| format!("{}: limits: {error}", path.display()))?;
    Ok(())
}

fn read(path: &Path) -> Result<String, String> {
    let too_large = std::fs::metadata(path).is_ok_and(|metadata| metadata.len() > FILE_BYTES_MAX);
    if too_large {
        return Err(format!("{}: larger than {FILE_BYTES_MAX} bytes", path.display()));
    }
    std::fs::read_to_string(path).map_err(|error| format!("{}: cannot read it: {error}", path.display()))
}

fn parse(path: &Path, text: &str) -> Result<ConfigFile, String> {
    let mut options = serde_saphyr::Options::default();
    options.with_snippet = false;
    serde_saphyr::from_str_with_options::<ConfigFile>(text, options).map_err(|error| {
        let (line, column) = error
            .location()
            .map_or((1, 1), |location| (location.line().max(1), location.column().max(1)));
        let mut message = error.to_string();
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        let message = message.strip_prefix("error: ").unwrap_or(&message).to_string();
        format!("{}:{line}:{column}: {message}", path.display())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<ConfigFile, String> {
        parse(Path::new("broker.yaml"), text)
    }

    #[test]
    fn every_section_parses() {
        let file = parse_text(
            "listen: [127.0.0.1:1883, ws://127.0.0.1:8080/mqtt]\n\
             tls: {cert: a.pem, key: a.key, tls_version: tlsv1.3}\n\
             security: {password_file: pw, allow_anonymous: false}\n\
             sys_interval: 0\n\
             limits: {max_connections: 10, no_retain: true, max_keep_alive: 30}\n",
        )
        .unwrap();
        assert_eq!(file.listen.len(), 2);
        assert_eq!(file.tls.cert.as_deref(), Some(Path::new("a.pem")));
        assert_eq!(file.security.allow_anonymous, Some(false));
        assert_eq!(file.limits.max_connections, Some(10));
        assert!(file.limits.no_retain);
        assert_eq!(file.limits.max_keep_alive, Some(30));
    }

    #[test]
    fn an_unknown_key_or_a_wrong_type_is_named_with_its_line_and_column() {
        let error = parse_text("limits:\n  max_connections: 10\n  max_conections: 5\n").unwrap_err();
        assert!(error.starts_with("broker.yaml:3:3: "), "{error}");
        assert!(error.contains("max_conections"), "{error}");
        let error = parse_text("security:\n  allow_anonymous: perhaps\n").unwrap_err();
        assert!(error.starts_with("broker.yaml:2:20: "), "{error}");
        let error = parse_text("listn: []\n").unwrap_err();
        assert!(error.starts_with("broker.yaml:1:1: "), "{error}");
    }
}
