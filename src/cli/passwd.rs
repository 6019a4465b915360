//! `mqtt-harness passwd`: adds, changes or deletes users in a password file, as mosquitto_passwd
//! does (same flags, same file format: mosquitto reads what this writes by default), plus SCRAM
//! keys (`-H scram-sha-256`) for 5.0 enhanced authentication, which mosquitto does not read.

use std::io::{self, BufRead};
use std::path::PathBuf;
use std::process::ExitCode;

use mqtt_broker::security::password::{PasswordFile, PasswordHash, PBKDF2_SHA512_ITERATIONS_DEFAULT};
use mqtt_client::scram::{Credentials, ITERATIONS_DEFAULT, ITERATIONS_MAX};

use super::{EXIT_FAILED, EXIT_USAGE};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  mqtt-harness passwd -c -b passwords alice secret       (a new file, as mosquitto_passwd -c -b)
  mqtt-harness passwd -H scram-sha-256 -b passwords bob hunter2
  echo secret | mqtt-harness passwd passwords carol      (the password from standard input)
  mqtt-harness passwd -D passwords alice")]
pub struct Args {
    /// Create the file, replacing any file there
    #[arg(short = 'c', conflicts_with = "delete")]
    pub create: bool,
    /// Delete the user
    #[arg(short = 'D', conflicts_with = "batch")]
    pub delete: bool,
    /// Take the password from the command line (else the first line of standard input)
    #[arg(short = 'b')]
    pub batch: bool,
    /// Hash: sha512-pbkdf2 (mosquitto_passwd's default) or scram-sha-256 (also SCRAM sign-in)
    #[arg(short = 'H', long = "hash", value_name = "HASH", default_value = "sha512-pbkdf2",
          value_parser = ["sha512-pbkdf2", "scram-sha-256"])]
    pub hash: String,
    /// Iterations [default: 101 for sha512-pbkdf2, as mosquitto_passwd; 4096 for scram-sha-256]
    #[arg(short = 'I', long = "iterations", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(ITERATIONS_MAX)))]
    pub iterations: Option<u32>,
    /// The password file
    pub file: PathBuf,
    /// The user name
    pub username: String,
    /// The password (with -b)
    pub password: Option<String>,
}

pub fn run(args: Args) -> ExitCode {
    match update(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}

fn update(args: &Args) -> Result<(), (u8, String)> {
    let usage = |message: String| (EXIT_USAGE, message);
    if args.username.is_empty() || args.username.contains(':') {
        return Err(usage("a user name must be non-empty and hold no ':'".into()));
    }
    let mut file = if args.create {
        PasswordFile::default()
    } else {
        let text = std::fs::read_to_string(&args.file).map_err(|error| {
            usage(format!(
                "{}: cannot read it: {error} (-c creates it)",
                args.file.display()
            ))
        })?;
        PasswordFile::parse(&text).map_err(|error| usage(format!("{}:{error}", args.file.display())))?
    };
    if args.delete {
        if !file.remove(&args.username) {
            return Err((
                EXIT_FAILED,
                format!("user {} not found in {}", args.username, args.file.display()),
            ));
        }
    } else {
        let password = match (&args.password, args.batch) {
            (Some(password), true) => password.clone(),
            (Some(_), false) => return Err(usage("a password on the command line needs -b".into())),
            (None, true) => return Err(usage("-b needs the password after the user name".into())),
            (None, false) => read_password().map_err(|error| usage(format!("cannot read the password: {error}")))?,
        };
        if password.is_empty() {
            return Err(usage("the password is empty".into()));
        }
        let salt = random_salt().map_err(|error| (EXIT_FAILED, error))?;
        let hash = if args.hash == "scram-sha-256" {
            let iterations = args.iterations.unwrap_or(ITERATIONS_DEFAULT);
            PasswordHash::Scram(Credentials::derive(password.as_bytes(), &salt, iterations))
        } else {
            let iterations = args.iterations.unwrap_or(PBKDF2_SHA512_ITERATIONS_DEFAULT);
            PasswordHash::pbkdf2_sha512(password.as_bytes(), &salt[..12], iterations)
        };
        file.set(&args.username, hash);
    }
    write_private(&args.file, &file.to_string()).map_err(|error| {
        (
            EXIT_FAILED,
            format!("{}: cannot write it: {error}", args.file.display()),
        )
    })
}

/// The first line of standard input, without its line end.
fn read_password() -> io::Result<String> {
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn random_salt() -> Result<[u8; 16], String> {
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
        .map_err(|_| "the system's random number generator failed".to_string())?;
    Ok(salt)
}

/// Writes `text` to `path` readable by its owner only (a new file; an existing one keeps its
/// mode), through a temporary file renamed over it, so a reader never sees half a file.
fn write_private(path: &std::path::Path, text: &str) -> io::Result<()> {
    let temporary = path.with_extension("tmp-mqtt-harness");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mode = std::fs::metadata(path).map_or(0o600, |metadata| {
                use std::os::unix::fs::PermissionsExt;
                metadata.permissions().mode()
            });
            options.mode(mode);
        }
        io::Write::write_all(&mut options.open(&temporary)?, text.as_bytes())?;
    }
    std::fs::rename(&temporary, path)
}
