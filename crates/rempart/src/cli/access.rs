//! `rempart resource …`, `rempart access …` and `rempart grant check`.

use anyhow::Result;
use clap::Subcommand;
use rempart_api::{CreateRequest, CreateResource, RequestView};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Register a host or a database that access can be requested for.
    Add {
        /// `host` or `db`.
        kind: String,
        name: String,
        /// A label, key=value (repeat): e.g. --label env=prod --label data=pii.
        #[arg(long = "label")]
        labels: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List registered resources.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Ask for time-bound access; prints the request's id.
    Request {
        /// `host:NAME` or `db:NAME` (repeat for several).
        #[arg(long = "resource", required = true)]
        resources: Vec<String>,
        /// Why: what you will do, and the ticket if the rules ask for one.
        #[arg(long)]
        reason: String,
        /// How long: 30m, 2h, 1d.
        #[arg(long = "for")]
        duration: String,
        /// When it should start (RFC 3339) [default: once approved].
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List requests, newest first (reviewers see everyone's).
    List {
        /// pending, approved, denied, expired, revoked or cancelled.
        #[arg(long)]
        state: Option<String>,
        /// Only my own requests.
        #[arg(long)]
        mine: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one request and everything that happened to it.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request (reviewers; never your own).
    Approve {
        id: String,
        #[arg(long)]
        comment: String,
        #[arg(long)]
        json: bool,
    },
    /// Deny a pending request: one deny ends it.
    Deny {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// End an approved grant now.
    Revoke {
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Withdraw your own pending request.
    Cancel {
        id: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// Whether USER may reach RESOURCE now (needs a bastion machine identity).
    Check {
        #[arg(long)]
        user: String,
        #[arg(long)]
        resource: String,
        #[arg(long)]
        json: bool,
    },
}

fn print_request(view: &RequestView) {
    println!("request {} ({})", view.id, view.state);
    println!("  requester:  {}", view.requester);
    println!("  resources:  {}", view.resources.join(", "));
    println!("  reason:     {}", view.reason);
    println!(
        "  access:     {} {}",
        view.duration,
        view.start
            .map(|s| format!("from {}", output::time(s)))
            .unwrap_or_else(|| "from approval".to_owned())
    );
    println!(
        "  approvals:  {} of {}",
        view.approvals, view.approvals_needed
    );
    if let (Some(start), Some(end)) = (view.grant_start, view.grant_end) {
        println!(
            "  grant:      {} to {}",
            output::time(start),
            output::time(end)
        );
    }
    for review in &view.reviews {
        println!(
            "  {} {} by {}: {}",
            output::time(review.at),
            review.decision,
            review.reviewer,
            review.comment
        );
    }
    for action in &view.actions {
        println!(
            "  {} {} by {}: {}",
            output::time(action.at),
            action.kind,
            action.actor,
            action.reason
        );
    }
}

pub async fn run_resource(args: &ClientArgs, command: ResourceCommand) -> Result<()> {
    let client = client(args)?;
    match command {
        ResourceCommand::Add {
            kind,
            name,
            labels,
            json,
        } => {
            let mut map = std::collections::BTreeMap::new();
            for label in &labels {
                let (key, value) =
                    rempart_access::labels::parse_label(label).map_err(anyhow::Error::msg)?;
                map.insert(key, value);
            }
            let created = client
                .create_resource(&CreateResource {
                    kind,
                    name,
                    labels: map,
                })
                .await?;
            if json {
                return output::json(&created);
            }
            println!("{}", created.resource);
        }
        ResourceCommand::List { json } => {
            let list = client.list_resources().await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .resources
                .iter()
                .map(|r| {
                    let labels: Vec<String> =
                        r.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    vec![r.resource.clone(), labels.join(",")]
                })
                .collect();
            output::table(&["RESOURCE", "LABELS"], &rows);
        }
    }
    Ok(())
}

pub async fn run_access(args: &ClientArgs, command: AccessCommand) -> Result<()> {
    let client = client(args)?;
    let (view, json) = match command {
        AccessCommand::Request {
            resources,
            reason,
            duration,
            start,
            json,
        } => {
            let start = start
                .map(|s| {
                    OffsetDateTime::parse(&s, &Rfc3339)
                        .map_err(|e| anyhow::anyhow!("--start {s:?}: not an RFC 3339 time: {e}"))
                })
                .transpose()?;
            let view = client
                .create_request(&CreateRequest {
                    resources,
                    reason,
                    duration,
                    start,
                })
                .await?;
            if !json {
                println!("{}", view.id);
                return Ok(());
            }
            (view, json)
        }
        AccessCommand::List { state, mine, json } => {
            let list = client.list_requests(state.as_deref(), mine).await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .requests
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.state.clone(),
                        r.requester.clone(),
                        r.resources.join(","),
                        r.duration.clone(),
                        format!("{}/{}", r.approvals, r.approvals_needed),
                        r.reason.clone(),
                    ]
                })
                .collect();
            output::table(
                &[
                    "ID",
                    "STATE",
                    "REQUESTER",
                    "RESOURCES",
                    "FOR",
                    "APPROVALS",
                    "REASON",
                ],
                &rows,
            );
            return Ok(());
        }
        AccessCommand::Show { id, json } => (client.get_request(&id).await?, json),
        AccessCommand::Approve { id, comment, json } => (
            client
                .decide_request(&id, "approve", Some(&comment))
                .await?,
            json,
        ),
        AccessCommand::Deny { id, reason, json } => (
            client.decide_request(&id, "deny", Some(&reason)).await?,
            json,
        ),
        AccessCommand::Revoke { id, reason, json } => (
            client.decide_request(&id, "revoke", Some(&reason)).await?,
            json,
        ),
        AccessCommand::Cancel { id, json } => {
            (client.decide_request(&id, "cancel", None).await?, json)
        }
    };
    if json {
        return output::json(&view);
    }
    print_request(&view);
    Ok(())
}

pub async fn run_grant(args: &ClientArgs, command: GrantCommand) -> Result<()> {
    let client = client(args)?;
    let GrantCommand::Check {
        user,
        resource,
        json,
    } = command;
    let check = client.check_grant(&user, &resource).await?;
    if json {
        return output::json(&check);
    }
    match (check.allow, &check.grant, check.ends_at) {
        (true, Some(grant), Some(end)) => {
            println!(
                "allow: {user} on {resource} by grant {grant} until {}",
                output::time(end)
            )
        }
        _ => println!(
            "deny: {user} on {resource}: {}",
            check.reason.as_deref().unwrap_or("no grant")
        ),
    }
    Ok(())
}
