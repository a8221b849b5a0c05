//! `rempart user …`

use anyhow::Result;
use clap::Subcommand;
use rempart_api::{CreateUser, Email, User};
use rempart_core::{Role, Roles, UserName};

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user; prints their first API token once.
    Add {
        name: UserName,
        /// engineer, security or admin; repeat for several.
        #[arg(long = "role", required = true)]
        roles: Vec<Role>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one user.
    Show {
        name: UserName,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: their tokens stop working at once.
    Disable { name: UserName },
    /// Issue a new API token (printed once); the user's older tokens stop working.
    Token {
        name: UserName,
        #[arg(long)]
        json: bool,
    },
}

fn state(user: &User) -> &'static str {
    if user.disabled_at.is_some() {
        "disabled"
    } else {
        "active"
    }
}

fn print_users(users: &[User]) {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.name.to_string(),
                u.roles.to_string(),
                u.email.clone().unwrap_or_else(|| "-".to_owned()),
                state(u).to_owned(),
                output::time(u.created_at),
            ]
        })
        .collect();
    output::table(&["NAME", "ROLES", "EMAIL", "STATE", "CREATED"], &rows);
}

pub async fn run(args: &ClientArgs, command: UserCommand) -> Result<()> {
    let client = client(args)?;
    match command {
        UserCommand::Add {
            name,
            roles,
            email,
            json,
        } => {
            let request = CreateUser {
                name,
                roles: Roles::new(roles).map_err(anyhow::Error::msg)?,
                email: email
                    .map(Email::try_from)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
            };
            let created = client.create_user(&request).await?;
            if json {
                return output::json(&created);
            }
            eprintln!(
                "created user {} ({}); their API token, shown once:",
                created.user.name, created.user.roles
            );
            println!("{}", created.token.token);
        }
        UserCommand::List { json } => {
            let list = client.list_users().await?;
            if json {
                return output::json(&list);
            }
            print_users(&list.users);
        }
        UserCommand::Show { name, json } => {
            let user = client.get_user(&name).await?;
            if json {
                return output::json(&user);
            }
            print_users(std::slice::from_ref(&user));
        }
        UserCommand::Disable { name } => {
            let user = client.disable_user(&name).await?;
            println!(
                "disabled {} at {}",
                user.name,
                output::optional_time(user.disabled_at)
            );
        }
        UserCommand::Token { name, json } => {
            let issued = client.issue_token(&name).await?;
            if json {
                return output::json(&issued);
            }
            eprintln!(
                "new API token for {} (shown once; older tokens no longer work; expires: {}):",
                issued.user,
                output::optional_time(issued.expires_at)
            );
            println!("{}", issued.token);
        }
    }
    Ok(())
}
