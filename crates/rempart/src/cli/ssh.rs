//! `rempart login` and `rempart ssh`: a person's OpenSSH certificate for the
//! bastion, and the stock `ssh` pointed at it.

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::RngCore;
use rempart_api::CreateSshCertificate;
use ssh_key::private::Ed25519Keypair;
use ssh_key::{Algorithm, Certificate, LineEnding, PrivateKey, PublicKey};

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The Ed25519 private key to certify; its certificate is written beside
    /// it as `<key>-cert.pub`, where `ssh` finds it [default:
    /// ~/.ssh/id_ed25519 if it exists, else ~/.rempart/id_ed25519, made now].
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// How long the certificate lasts (e.g. 2h) [default and most: the
    /// deployment's `[ssh] user_certificate_max`, 8h unless changed].
    #[arg(long)]
    pub valid_for: Option<String>,
    /// A client certificate for this database behind the bastion instead
    /// of an SSH certificate (`payments` for `db:payments`).
    #[arg(long, value_name = "NAME", conflicts_with = "identity")]
    pub db: Option<String>,
    /// With --db: where the key and certificates go [default:
    /// ~/.rempart/db/NAME].
    #[arg(long, value_name = "DIR", requires = "db")]
    pub db_dir: Option<PathBuf>,
    /// With --db: the bastion's PostgreSQL listener, for the psql line printed.
    #[arg(long, env = "REMPART_DB_BASTION", default_value = "127.0.0.1:5433")]
    pub db_bastion: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The target host (a `host:` resource you hold a grant for).
    pub target: String,
    /// The bastion, `host:port`.
    #[arg(long, env = "REMPART_BASTION", default_value = "127.0.0.1:2222")]
    pub bastion: String,
    /// The key `rempart login` certified [default: as for login].
    #[arg(long, short = 'i')]
    pub identity: Option<PathBuf>,
    /// An ssh option (`-o UserKnownHostsFile=…`), repeatable.
    #[arg(short = 'o', value_name = "OPTION")]
    pub option: Vec<String>,
    /// Arguments after `--` go to ssh as the remote command.
    #[arg(last = true)]
    pub command: Vec<String>,
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set: give the key with --identity")
}

/// The key to use: the one given, else the usual OpenSSH Ed25519 key, else
/// Rempart's own.
fn default_identity() -> Result<PathBuf> {
    let home = home()?;
    let usual = home.join(".ssh").join("id_ed25519");
    if usual.exists() {
        return Ok(usual);
    }
    Ok(home.join(".rempart").join("id_ed25519"))
}

/// `<key>-cert.pub`, where `ssh -i <key>` looks for a certificate.
fn certificate_path(key: &Path) -> PathBuf {
    let mut name = key.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}

/// The key's public half: from `<key>.pub`, or from the key itself when it
/// is not passphrase-protected; made (Ed25519, mode 0600) when missing.
fn public_key_of(path: &Path) -> Result<PublicKey> {
    let mut public = path.as_os_str().to_owned();
    public.push(".pub");
    let public = PathBuf::from(public);
    if !path.exists() {
        create_key(path, &public)?;
    }
    let key = if public.exists() {
        let text = std::fs::read_to_string(&public)
            .with_context(|| format!("reading {}", public.display()))?;
        PublicKey::from_openssh(text.trim())
            .with_context(|| format!("{}: not an OpenSSH public key", public.display()))?
    } else {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        PrivateKey::from_openssh(text.as_bytes())
            .with_context(|| format!("{}: not an OpenSSH private key", path.display()))?
            .public_key()
            .clone()
    };
    if key.algorithm() != Algorithm::Ed25519 {
        bail!(
            "{} is a {} key; the bastion takes Ed25519 only (ssh-keygen -t ed25519)",
            path.display(),
            key.algorithm()
        );
    }
    Ok(key)
}

fn create_key(path: &Path, public: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut seed = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    seed.fill(0);
    key.set_comment("rempart login");
    let private = key
        .to_openssh(LineEnding::LF)
        .context("encoding the new key")?;
    write_file(path, private.as_bytes(), 0o600)?;
    let line = key
        .public_key()
        .to_openssh()
        .context("encoding the new key")?;
    write_file(public, format!("{line}\n").as_bytes(), 0o644)?;
    eprintln!("made a new Ed25519 key: {}", path.display());
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces `path` at once (written aside, then renamed).
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".new-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    let _ = std::fs::remove_file(&aside);
    write_file(&aside, bytes, 0o644)?;
    std::fs::rename(&aside, path).with_context(|| format!("replacing {}", path.display()))
}

pub async fn login(client_args: &ClientArgs, args: LoginArgs) -> Result<()> {
    if let Some(database) = args.db {
        return super::db::login(
            client_args,
            super::db::DbLogin {
                database,
                dir: args.db_dir,
                valid_for: args.valid_for,
                bastion: args.db_bastion,
                json: args.json,
            },
        )
        .await;
    }
    let key_path = match args.identity {
        Some(path) => path,
        None => default_identity()?,
    };
    let public = public_key_of(&key_path)?;
    let issued = client(client_args)?
        .ssh_certificate(&CreateSshCertificate {
            public_key: public.to_openssh().context("encoding the public key")?,
            valid_for: args.valid_for,
        })
        .await?;
    // Check what came back before writing it where ssh will use it.
    let cert = Certificate::from_openssh(&issued.certificate)
        .context("the server's certificate does not parse")?;
    if cert.public_key() != public.key_data() {
        bail!(
            "the server certified another key than {}",
            key_path.display()
        );
    }
    let cert_path = certificate_path(&key_path);
    replace_file(&cert_path, format!("{}\n", issued.certificate).as_bytes())?;
    if args.json {
        return output::json(&issued);
    }
    println!(
        "certificate for {} (serial {}) valid until {}: {}",
        issued.principal,
        issued.serial,
        output::time(issued.valid_before),
        cert_path.display()
    );
    println!(
        "connect: ssh -p 2222 -i {} {}+TARGET@BASTION   (or: rempart ssh TARGET)",
        key_path.display(),
        issued.principal
    );
    Ok(())
}

/// Runs the stock `ssh` to `TARGET` through the bastion, as the person the
/// certificate names; exits with ssh's status.
pub fn ssh(args: SshArgs) -> Result<()> {
    let key_path = match args.identity {
        Some(path) => path,
        None => default_identity()?,
    };
    let cert_path = certificate_path(&key_path);
    let cert = Certificate::read_file(&cert_path).with_context(|| {
        format!(
            "{}: no certificate; run `rempart login` first",
            cert_path.display()
        )
    })?;
    let Some(user) = cert.valid_principals().first() else {
        bail!("{}: the certificate names nobody", cert_path.display());
    };
    let (host, port) = match args.bastion.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            (host.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (args.bastion.as_str(), "2222"),
    };
    let status = std::process::Command::new("ssh")
        .arg("-p")
        .arg(port)
        .arg("-i")
        .arg(&key_path)
        .arg("-o")
        .arg("IdentitiesOnly=yes")
        // Offer the certificate, not the bare key first (the bastion
        // refuses bare keys, after a constant delay).
        .arg("-o")
        .arg("PubkeyAcceptedAlgorithms=ssh-ed25519-cert-v01@openssh.com")
        .args(args.option.iter().flat_map(|o| ["-o", o.as_str()]))
        .arg(format!("{user}+{}@{host}", args.target))
        .args(&args.command)
        .status()
        .context("running ssh (is the OpenSSH client installed?)")?;
    std::process::exit(status.code().unwrap_or(255));
}
