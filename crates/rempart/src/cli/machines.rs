//! `rempart machine …`

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use rempart_api::{CreateMachine, Machine};
use rempart_core::{MachineName, MachineRole};
use rempart_server::datadir::write_new;
use rempart_tls::MachineKey;

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Subcommand)]
pub enum MachineCommand {
    /// Create a machine identity: a key made here, a certificate signed by the CA.
    Add {
        name: MachineName,
        #[arg(long)]
        role: MachineRole,
        /// A DNS name or IP address the certificate also serves TLS under
        /// (a bastion's PostgreSQL listener); repeatable.
        #[arg(long = "server-name", value_name = "NAME")]
        server_names: Vec<String>,
        /// Directory for NAME.key, NAME.crt and ca.crt [default: current directory].
        #[arg(long, default_value = ".")]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// List machine identities.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a machine identity: its certificate is refused at once.
    Revoke { name: MachineName },
}

fn print_machines(machines: &[Machine]) {
    let rows: Vec<Vec<String>> = machines
        .iter()
        .map(|m| {
            vec![
                m.name.to_string(),
                m.role.to_string(),
                if m.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                }
                .to_owned(),
                output::time(m.not_after),
                m.cert_sha256.get(..16).unwrap_or(&m.cert_sha256).to_owned(),
            ]
        })
        .collect();
    output::table(
        &["NAME", "ROLE", "STATE", "NOT AFTER", "CERT SHA-256"],
        &rows,
    );
}

pub async fn run(args: &ClientArgs, command: MachineCommand) -> Result<()> {
    let client = client(args)?;
    match command {
        MachineCommand::Add {
            name,
            role,
            server_names,
            out,
            json,
        } => {
            let key_path = out.join(format!("{name}.key"));
            let cert_path = out.join(format!("{name}.crt"));
            let ca_path = out.join("ca.crt");
            // Refuse before asking the server, so a failure leaves nothing issued.
            for path in [&key_path, &cert_path] {
                anyhow::ensure!(!path.exists(), "{} already exists", path.display());
            }
            let key = MachineKey::generate()?;
            let request = CreateMachine {
                name: name.clone(),
                role,
                csr_pem: key.csr_pem(name.as_str())?,
                server_names,
            };
            let issued = client.create_machine(&request).await?;
            write_new(&key_path, key.key_pem().expose(), 0o600)?;
            write_new(&cert_path, &issued.cert_pem, 0o644)?;
            if !ca_path.exists() {
                write_new(&ca_path, &issued.ca_pem, 0o644)?;
            }
            if json {
                return output::json(&issued.machine);
            }
            println!(
                "machine {} ({}) until {}\n  key:         {} (mode 0600, never sent anywhere)\n  certificate: {}\n  CA:          {}\n  sha256:      {}",
                issued.machine.name,
                issued.machine.role,
                output::time(issued.machine.not_after),
                key_path.display(),
                cert_path.display(),
                ca_path.display(),
                issued.machine.cert_sha256
            );
        }
        MachineCommand::List { json } => {
            let list = client.list_machines().await?;
            if json {
                return output::json(&list);
            }
            print_machines(&list.machines);
        }
        MachineCommand::Revoke { name } => {
            let machine = client.revoke_machine(&name).await?;
            println!(
                "revoked {} at {}",
                machine.name,
                output::optional_time(machine.revoked_at)
            );
        }
    }
    Ok(())
}
