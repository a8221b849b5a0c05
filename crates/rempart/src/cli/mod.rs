//! The command line: its definition (clap derive) and the dispatch to each
//! command's module.

mod access;
mod connect;
mod db;
mod log;
pub mod logging;
mod machines;
mod output;
mod policy;
mod server;
mod sessions;
mod ssh;
mod training;
mod users;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use rempart_config::StoreSetting;

#[derive(Debug, Parser)]
#[command(name = "rempart", version, about = "Rempart: the security policy as running, provable controls", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub client: connect::ClientArgs,

    /// Log format on standard error.
    #[arg(long, global = true, value_enum, default_value_t = logging::LogFormat::Text)]
    pub log_format: logging::LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a data directory: settings, CA, server certificate, store and the admin user.
    Init(NodeArgs),
    /// Run the control plane (initialising an empty data directory first).
    Serve(NodeArgs),
    /// Check rempart.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage people's accounts and tokens.
    #[command(subcommand)]
    User(users::UserCommand),
    /// Manage machine identities (mTLS client certificates).
    #[command(subcommand)]
    Machine(machines::MachineCommand),
    /// The well-log: append, checkpoints, proofs, offline verification.
    #[command(subcommand)]
    Log(log::LogCommand),
    /// Hosts and databases that access can be requested for.
    #[command(subcommand)]
    Resource(access::ResourceCommand),
    /// Access requests: ask, review, revoke.
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Grant checks, as the bastion and the data proxy make them.
    #[command(subcommand)]
    Grant(access::GrantCommand),
    /// Security training: modules, completions, status.
    #[command(subcommand)]
    Training(training::TrainingCommand),
    /// Firewall policy as code: check, compile.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Get an OpenSSH certificate for the bastion, on your Ed25519 key.
    Login(ssh::LoginArgs),
    /// Connect to a host through the bastion with the stock ssh.
    Ssh(ssh::SshArgs),
    /// Bastion sessions: list, show, play and export their recordings.
    #[command(subcommand)]
    Session(sessions::SessionCommand),
    /// Run the bastion: SSH in, grant checked, session to the target, recorded and logged.
    Bastion {
        /// The bastion's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show who the server sees you as.
    Whoami {
        #[arg(long)]
        json: bool,
    },
    /// Ask the server whether it is up (no credentials needed).
    Health {
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// The long-running command logs at `info` by default, one-shot ones at `warn`.
    pub fn is_service(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Bastion { .. })
    }
}

#[derive(Debug, Args)]
pub struct DataDirArg {
    /// The data directory.
    #[arg(long, env = "REMPART_DATA_DIR", default_value = "./rempart-data")]
    pub data_dir: PathBuf,
}

/// Where a control-plane node keeps its state and listens: `init` writes
/// these into rempart.toml; `serve` uses them over rempart.toml's values.
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub dir: DataDirArg,
    /// Address to listen on [default: rempart.toml's `listen`, 127.0.0.1:8443].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// "sqlite" or a postgres:// URL [default: rempart.toml's `store`, sqlite].
    #[arg(long, env = "REMPART_STORE", hide_env_values = true)]
    pub store: Option<StoreSetting>,
    /// Let admins move the access clock forward (POST /v1/danger/clock): tests only.
    #[arg(long, hide = true)]
    pub danger_test_clock: bool,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate rempart.toml and the data directory's key files; print warnings.
    Check {
        #[command(flatten)]
        dir: DataDirArg,
        /// Check this file instead of the data directory's rempart.toml.
        #[arg(long)]
        file: Option<PathBuf>,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => server::init(args).await,
        Command::Serve(args) => server::serve(args).await,
        Command::Config(ConfigCommand::Check { dir, file }) => server::config_check(dir, file),
        Command::User(command) => users::run(&cli.client, command).await,
        Command::Machine(command) => machines::run(&cli.client, command).await,
        Command::Log(command) => log::run(&cli.client, command).await,
        Command::Resource(command) => access::run_resource(&cli.client, command).await,
        Command::Access(command) => access::run_access(&cli.client, command).await,
        Command::Grant(command) => access::run_grant(&cli.client, command).await,
        Command::Training(command) => training::run(&cli.client, command).await,
        Command::Policy(command) => policy::run(command),
        Command::Login(args) => ssh::login(&cli.client, args).await,
        Command::Ssh(args) => ssh::ssh(args),
        Command::Session(command) => sessions::run(&cli.client, command).await,
        Command::Bastion { config } => {
            let config = rempart_bastion::BastionConfig::load(&config)?;
            rempart_bastion::run(
                config,
                |listening| {
                    println!("listening on {}", listening.ssh);
                    if let Some(postgres) = listening.postgres {
                        println!("postgres listening on {postgres}");
                    }
                },
                server::shutdown_signal(),
            )
            .await
        }
        Command::Whoami { json } => {
            let whoami = connect::client(&cli.client)?.whoami().await?;
            if json {
                output::json(&whoami)
            } else {
                println!("{}", whoami.actor);
                Ok(())
            }
        }
        Command::Health { json } => {
            let health = connect::client_without_token(&cli.client)?.health().await?;
            if json {
                output::json(&health)
            } else {
                println!("{} (rempart {})", health.status, health.version);
                Ok(())
            }
        }
    }
}
