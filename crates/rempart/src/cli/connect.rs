//! Reaching the control plane from the command line: which server, which CA
//! to trust, and which credential to present.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use rempart_client::{Client, ClientOptions};
use rempart_core::Secret;

fn secret(value: &str) -> Result<Secret<String>, String> {
    Ok(Secret::new(value.to_owned()))
}

#[derive(Debug, Args)]
pub struct ClientArgs {
    /// URL of the control plane.
    #[arg(
        long,
        global = true,
        env = "REMPART_SERVER",
        default_value = "https://127.0.0.1:8443"
    )]
    pub server: String,
    /// API token. Prefer REMPART_TOKEN or --token-file: other local users can
    /// read a process's arguments.
    #[arg(long, global = true, env = "REMPART_TOKEN", hide_env_values = true, value_parser = secret)]
    pub token: Option<Secret<String>>,
    /// File holding the API token.
    #[arg(
        long,
        global = true,
        env = "REMPART_TOKEN_FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// The deployment's CA certificate, the only one trusted
    /// [default: ./rempart-data/ca.crt when it exists].
    #[arg(long, global = true, env = "REMPART_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// A machine identity's client certificate (mTLS), with --key.
    #[arg(long, global = true, env = "REMPART_CLIENT_CERT", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The key of --cert.
    #[arg(long, global = true, env = "REMPART_CLIENT_KEY", requires = "cert")]
    pub key: Option<PathBuf>,
}

const LOCAL_CA: &str = "./rempart-data/ca.crt";

fn read(path: &Path, what: &str) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading the {what} {}", path.display()))
}

fn options(args: &ClientArgs, token: Option<Secret<String>>) -> Result<ClientOptions> {
    let ca_path = match &args.ca_cert {
        Some(path) => path.clone(),
        None if Path::new(LOCAL_CA).exists() => {
            trustworthy_local_ca()?;
            PathBuf::from(LOCAL_CA)
        }
        None => bail!(
            "no CA certificate to trust: pass --ca-cert or set REMPART_CA_CERT (the data directory's ca.crt)"
        ),
    };
    let identity = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Some((
            read(cert, "client certificate")?,
            Secret::new(read(key, "client key")?),
        )),
        _ => None,
    };
    Ok(ClientOptions {
        server: args.server.clone(),
        ca_pem: read(&ca_path, "CA certificate")?,
        token,
        identity,
    })
}

/// The implicit CA decides which server gets the token: use it only if no
/// one but its owner could have put it there.
fn trustworthy_local_ca() -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for path in [
        Path::new(LOCAL_CA),
        Path::new("./rempart-data"),
        Path::new("."),
    ] {
        let mode = std::fs::metadata(path)
            .with_context(|| format!("{}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o022 != 0 {
            bail!(
                "{} is writable by others, so {LOCAL_CA} cannot be trusted implicitly: pass --ca-cert",
                path.display()
            );
        }
    }
    Ok(())
}

fn token(args: &ClientArgs) -> Result<Option<Secret<String>>> {
    if let Some(token) = &args.token {
        return Ok(Some(token.clone()));
    }
    match &args.token_file {
        Some(path) => Ok(Some(Secret::new(
            read(path, "token file")?.trim().to_owned(),
        ))),
        None => Ok(None),
    }
}

/// A client that presents the caller's credential, refusing to start without one.
pub fn client(args: &ClientArgs) -> Result<Client> {
    let token = token(args)?;
    if token.is_none() && args.cert.is_none() {
        bail!(
            "no credential: set REMPART_TOKEN, pass --token-file, or --cert and --key for a machine identity"
        );
    }
    Ok(Client::new(options(args, token)?)?)
}

/// A client for the routes that need no credential (`/healthz`).
pub fn client_without_token(args: &ClientArgs) -> Result<Client> {
    Ok(Client::new(options(args, token(args)?)?)?)
}
