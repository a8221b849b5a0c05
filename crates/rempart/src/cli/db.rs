//! `rempart login --db NAME`: a person's client certificate for one
//! database behind the bastion, on a key made here, and the `psql` line
//! that uses it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rempart_api::CreateDbCertificate;
use rempart_tls::MachineKey;

use super::connect::{ClientArgs, client};
use super::output;

/// What `rempart login --db` is told.
#[derive(Debug)]
pub struct DbLogin {
    pub database: String,
    /// Where the key and certificates go [default: ~/.rempart/db/NAME].
    pub dir: Option<PathBuf>,
    pub valid_for: Option<String>,
    /// The bastion's PostgreSQL listener, `host:port`, for the line printed.
    pub bastion: String,
    pub json: bool,
}

fn default_dir(database: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; give --db-dir")?;
    Ok(PathBuf::from(home)
        .join(".rempart")
        .join("db")
        .join(database))
}

/// Writes `bytes` to `path` through a file beside it, so a reader never
/// sees half a key or certificate.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".new-{}", std::process::id()));
    let aside = PathBuf::from(aside);
    let _ = std::fs::remove_file(&aside);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&aside)
        .with_context(|| format!("creating {}", aside.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&aside, path).with_context(|| format!("replacing {}", path.display()))
}

pub async fn login(client_args: &ClientArgs, args: DbLogin) -> Result<()> {
    let dir = match args.dir {
        Some(dir) => dir,
        None => default_dir(&args.database)?,
    };
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    // A new key for every certificate: nothing long-lived lies on disk.
    let key = MachineKey::generate()?;
    let issued = client(client_args)?
        .create_db_certificate(&CreateDbCertificate {
            database: args.database.clone(),
            csr_pem: key.csr_pem(&args.database)?,
            valid_for: args.valid_for,
        })
        .await?;
    if issued.database != args.database {
        bail!(
            "the server certified database {:?}, not {:?}",
            issued.database,
            args.database
        );
    }
    let (key_path, cert_path, root_path) = (
        dir.join("client.key"),
        dir.join("client.crt"),
        dir.join("root.crt"),
    );
    // libpq refuses a key that others can read.
    replace(&key_path, key.key_pem().expose().as_bytes(), 0o600)?;
    // The same key as JDBC's driver reads it (PKCS #8 DER).
    replace(&dir.join("client.pk8"), key.key_pkcs8_der().expose(), 0o600)?;
    replace(&cert_path, issued.certificate_pem.as_bytes(), 0o644)?;
    replace(&root_path, issued.ca_pem.as_bytes(), 0o644)?;
    if args.json {
        return output::json(&issued);
    }
    let (host, port) = match args.bastion.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => {
            (host.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => bail!("--bastion: {:?} is not host:port", args.bastion),
    };
    println!(
        "certificate for {} on db:{} (serial {}) valid until {}: {}",
        issued.user,
        issued.database,
        issued.serial,
        output::time(issued.not_after),
        cert_path.display()
    );
    println!(
        "connect: psql \"host={host} port={port} dbname={} user={} sslmode=verify-full sslrootcert={} sslcert={} sslkey={}\"",
        issued.database,
        issued.user,
        root_path.display(),
        cert_path.display(),
        key_path.display()
    );
    println!(
        "jdbc:    jdbc:postgresql://{host}:{port}/{}?user={}&sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        issued.database,
        issued.user,
        root_path.display(),
        cert_path.display(),
        dir.join("client.pk8").display()
    );
    Ok(())
}
