//! The data directory: configuration, CA, server certificate, SQLite store and
//! the bootstrap admin token. Private keys and tokens are written mode 0600 in
//! a 0700 directory, and are refused at start if anyone else can read them.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rempart_config::{Config, StoreSetting};
use rempart_core::{Role, Roles, Secret, UserName};
use rempart_store::{NewUser, Store};
use rempart_tls::CertificateAuthority;
use time::OffsetDateTime;

use crate::auth::now_ms;

/// The files of a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

/// Renew the server certificate at start when it has less than this left.
const RENEW_BEFORE_DAYS: i64 = 30;

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        DataDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("rempart.toml")
    }
    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.crt")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.crt")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    pub fn sqlite(&self) -> PathBuf {
        self.root.join("rempart.db")
    }
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }
    pub fn welllog(&self) -> PathBuf {
        self.root.join("welllog")
    }
    /// The search index: derived from the well-log, rebuilt if deleted.
    pub fn search_index(&self) -> PathBuf {
        self.root.join("search-index.db")
    }

    pub fn is_initialised(&self) -> bool {
        self.config().exists()
    }

    /// The store URL for `setting`: SQLite lives in this directory.
    pub fn store_url(&self, setting: &StoreSetting) -> Result<Secret<String>> {
        Ok(match setting {
            StoreSetting::Sqlite => {
                let path = fs::canonicalize(&self.root)
                    .with_context(|| format!("{}", self.root.display()))?
                    .join("rempart.db");
                let path = path
                    .to_str()
                    .context("the data directory's path is not UTF-8")?;
                // The URL would read these as query, fragment or escapes and
                // open another file than the one we made private and lock.
                if path.contains(['?', '#', '%']) {
                    bail!("the data directory's path may not contain '?', '#' or '%': {path}");
                }
                Secret::new(format!("sqlite://{path}"))
            }
            StoreSetting::Postgres(url) => url.clone(),
        })
    }

    pub fn load_config(&self) -> Result<Config> {
        let path = self.config();
        let text = fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        Ok(Config::parse(&text, &path.display().to_string())?)
    }
}

/// What `init` created, for the caller to show once.
#[derive(Debug)]
pub struct Initialised {
    pub admin_token: Secret<String>,
    pub ca_fingerprint: String,
}

/// Settings given on the command line at `init` time, written into
/// `rempart.toml` in place of the defaults.
#[derive(Debug, Default, Clone)]
pub struct InitOptions {
    pub listen: Option<std::net::SocketAddr>,
    pub store: Option<StoreSetting>,
}

/// Creates `path` with `mode` from the start (never a world-readable window)
/// and refuses to overwrite an existing file.
pub fn write_new(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

/// A name no other process picks at the same time.
fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{}-{nanos:09}", std::process::id())
}

/// Replaces a file atomically (write aside, then rename), with `mode`.
fn replace(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let aside = path.with_extension(format!("new-{}", unique_suffix()));
    write_new(&aside, contents, mode)?;
    fs::rename(&aside, path).with_context(|| format!("replacing {}", path.display()))
}

/// Refuses a private file (or the directory) that others can read or
/// write, as OpenSSH does.
fn check_private(path: &Path) -> Result<()> {
    let mode = fs::metadata(path)
        .with_context(|| format!("{}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}); run chmod go-rwx on it",
            path.display(),
            mode & 0o777
        );
    }
    Ok(())
}

fn set_store_line(text: &str, setting: &StoreSetting) -> String {
    let value = match setting {
        StoreSetting::Sqlite => "sqlite".to_owned(),
        StoreSetting::Postgres(url) => url.expose().clone(),
    };
    text.replacen("store = \"sqlite\"", &format!("store = {value:?}"), 1)
}

/// Creates a data directory: configuration, CA, server certificate, store and
/// the `admin` user. Refuses a directory that is already initialised or not
/// empty. Everything is made in a staging directory beside it and renamed
/// into place at the end, so a failed init leaves nothing behind.
pub async fn init(dir: &DataDir, options: &InitOptions) -> Result<Initialised> {
    if dir.is_initialised() {
        bail!(
            "{} is already initialised (it has rempart.toml)",
            dir.root().display()
        );
    }
    if fs::read_dir(dir.root()).is_ok_and(|mut entries| entries.next().is_some()) {
        bail!("{} exists and is not empty", dir.root().display());
    }
    let name = dir
        .root()
        .file_name()
        .and_then(|n| n.to_str())
        .context("the data directory needs a name")?;
    let parent = match dir.root().parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = DataDir::new(parent.join(format!(".{name}.init-{}", unique_suffix())));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(staging.root())
        .with_context(|| format!("creating {}", staging.root().display()))?;
    match populate(&staging, options).await {
        Ok(done) => {
            fs::rename(staging.root(), dir.root()).with_context(|| {
                format!("moving the new data directory to {}", dir.root().display())
            })?;
            Ok(done)
        }
        Err(err) => {
            let _ = fs::remove_dir_all(staging.root());
            Err(err)
        }
    }
}

async fn populate(dir: &DataDir, options: &InitOptions) -> Result<Initialised> {
    let ca = CertificateAuthority::generate()?;
    let ca_fingerprint = rempart_tls::cert_sha256_hex(ca.cert_pem())?;
    let now = OffsetDateTime::now_utc();
    let mut text = rempart_config::default_toml(now);
    // The well-log's name is unique to this deployment: its CA's fingerprint.
    let origin = format!(
        "{}/{}",
        rempart_config::DEFAULT_ORIGIN,
        &ca_fingerprint[..16]
    );
    text = text.replacen(
        &format!("origin = \"{}\"", rempart_config::DEFAULT_ORIGIN),
        &format!("origin = \"{origin}\""),
        1,
    );
    if let Some(listen) = options.listen {
        text = text.replacen(
            "listen = \"127.0.0.1:8443\"",
            &format!("listen = \"{listen}\""),
            1,
        );
        // The server certificate must also cover the address clients will use.
        let ip = listen.ip();
        if !ip.is_loopback() && !ip.is_unspecified() {
            text = text.replacen("\"::1\"]", &format!("\"::1\", \"{ip}\"]"), 1);
        }
    }
    if let Some(store) = &options.store {
        text = set_store_line(&text, store);
    }
    let config = Config::parse(&text, "rempart.toml (generated)")?;
    // The configuration may hold a PostgreSQL password: private.
    write_new(&dir.config(), &text, 0o600)?;

    write_new(&dir.ca_key(), ca.key_pem().expose(), 0o600)?;
    write_new(&dir.ca_cert(), ca.cert_pem(), 0o644)?;
    issue_server_cert(dir, &ca, &config)?;
    // The well-log's signing key, made now: every node copied from this
    // directory then signs the shared log's checkpoints with the same key.
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir.welllog())
        .with_context(|| format!("creating {}", dir.welllog().display()))?;
    rempart_welllog::checkpoints::load_or_create_signer(&dir.welllog(), &origin)?;
    // The SSH CAs too, so that every node copied from here signs alike.
    crate::ssh_ca::SshAuthorities::load_or_create(dir.root())?;
    crate::db_ca::load_or_create(dir.root())?;

    let store = open_store(dir, &config.store, false).await?;
    if !store.list_users().await?.is_empty() {
        store.close().await;
        bail!(
            "the store already has users: it belongs to another control plane; to add a node, \
             copy that node's data directory (its CA and rempart.toml) instead of running init"
        );
    }
    let admin: UserName = "admin".parse().map_err(anyhow::Error::msg)?;
    store
        .create_user(&NewUser {
            name: admin.clone(),
            roles: Roles::new([Role::Admin]).map_err(anyhow::Error::msg)?,
            email: None,
            created_at_ms: now_ms(),
        })
        .await
        .context("creating the admin user")?;
    let token = rempart_core::ApiToken::generate();
    // The bootstrap token does not expire: it is how the first admin gets in.
    store
        .replace_token(&admin, &token.hash(), now_ms(), None)
        .await?;
    store.close().await;
    write_new(&dir.admin_token(), &format!("{}\n", token.expose()), 0o600)?;
    Ok(Initialised {
        admin_token: Secret::new(token.expose().to_owned()),
        ca_fingerprint,
    })
}

/// Opens the store; `serving` opens it as the sole writer (see
/// `Store::open_exclusive`): a second `serve` on the same SQLite directory
/// is refused.
pub async fn open_store(dir: &DataDir, setting: &StoreSetting, serving: bool) -> Result<Store> {
    if matches!(setting, StoreSetting::Sqlite) && !dir.sqlite().exists() {
        // Create the file ourselves so that it is private from the start.
        write_new(&dir.sqlite(), "", 0o600)?;
    }
    let url = dir.store_url(setting)?;
    let store = if serving {
        Store::open_exclusive(url.expose()).await
    } else {
        Store::open(url.expose()).await
    };
    store.context("opening the store")
}

fn server_names(config: &Config) -> Vec<String> {
    config
        .server_names
        .iter()
        .map(|n| n.as_str().to_owned())
        .collect()
}

fn issue_server_cert(dir: &DataDir, ca: &CertificateAuthority, config: &Config) -> Result<()> {
    let issued = ca.issue_server_cert(&server_names(config), config.tls.server_cert_days.get())?;
    replace(&dir.server_key(), issued.key_pem.expose(), 0o600)?;
    replace(&dir.server_cert(), &issued.cert_pem, 0o644)?;
    Ok(())
}

/// Refuses a data directory whose private files (or itself) are open to
/// group or others.
pub fn check_private_files(dir: &DataDir) -> Result<()> {
    check_private(dir.root())?;
    for private in [dir.ca_key(), dir.server_key(), dir.config()] {
        check_private(&private)?;
    }
    let optional = [
        dir.admin_token(),
        dir.sqlite(),
        dir.root().join("rempart.db-wal"),
        dir.root().join("rempart.db-shm"),
        dir.welllog().join("signing.key"),
        crate::ssh_ca::user_ca_path(dir.root()),
        crate::ssh_ca::host_access_ca_path(dir.root()),
        crate::db_ca::user_ca_key_path(dir.root()),
    ];
    for private in optional.iter().filter(|p| p.exists()) {
        check_private(private)?;
    }
    Ok(())
}

/// The CA and server certificate, checked and renewed when needed.
#[derive(Debug)]
pub struct Credentials {
    pub ca: CertificateAuthority,
    pub server_cert_pem: String,
    pub server_key_pem: Secret<String>,
}

pub fn load_credentials(dir: &DataDir, config: &Config) -> Result<Credentials> {
    check_private_files(dir)?;
    let read =
        |path: PathBuf| fs::read_to_string(&path).with_context(|| format!("{}", path.display()));
    let ca_key = Secret::new(read(dir.ca_key())?);
    let ca = CertificateAuthority::load(&read(dir.ca_cert())?, ca_key.expose())
        .with_context(|| format!("{}", dir.ca_cert().display()))?;

    let current = rempart_tls::cert_summary(&read(dir.server_cert())?)
        .with_context(|| format!("{}", dir.server_cert().display()))?;
    let wanted = server_names(config);
    let days_left = (current.not_after - OffsetDateTime::now_utc()).whole_days();
    if current.names != wanted || days_left < RENEW_BEFORE_DAYS {
        tracing::info!(?wanted, days_left, "renewing the server certificate");
        issue_server_cert(dir, &ca, config)?;
    }
    Ok(Credentials {
        ca,
        server_cert_pem: read(dir.server_cert())?,
        server_key_pem: Secret::new(read(dir.server_key())?),
    })
}
