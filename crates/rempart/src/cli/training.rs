//! `rempart training …`

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use rempart_api::{CreateTrainingModule, RecordTraining, TrainingCompletion};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

use super::connect::{ClientArgs, client};
use super::output;

#[derive(Debug, Subcommand)]
pub enum TrainingCommand {
    /// Training modules.
    #[command(subcommand)]
    Module(ModuleCommand),
    /// Record that USER completed MODULE.
    Record {
        user: String,
        module: String,
        /// When (YYYY-MM-DD or RFC 3339) [default: now].
        #[arg(long)]
        on: Option<String>,
    },
    /// Record completions from a CSV file: a header `user,module,completed_on`,
    /// then one completion per line (no quoting: names hold no commas).
    Import { file: PathBuf },
    /// Who is current on which module, and what expires soon.
    Status {
        user: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModuleCommand {
    /// Add a module whose completions stay valid for a period.
    Add {
        name: String,
        /// e.g. 365d.
        #[arg(long)]
        valid_for: String,
    },
    /// List modules.
    List {
        #[arg(long)]
        json: bool,
    },
}

/// A completion date: a day (midnight UTC) or an RFC 3339 time.
fn completed_at(text: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, &format)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("{text:?} is neither YYYY-MM-DD nor an RFC 3339 time"))
}

/// The completions of a CSV import, or the first bad line.
fn parse_csv(text: &str, file: &str) -> Result<Vec<TrainingCompletion>, String> {
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim().replace(' ', "") == "user,module,completed_on" => {}
        _ => {
            return Err(format!(
                "{file}:1: the header must be user,module,completed_on"
            ));
        }
    }
    let mut completions = Vec::new();
    for (index, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [user, module, on] = fields[..] else {
            return Err(format!(
                "{file}:{}: expected 3 fields (user,module,completed_on), found {}",
                index + 1,
                fields.len()
            ));
        };
        let at = completed_at(on).map_err(|e| format!("{file}:{}: {e}", index + 1))?;
        completions.push(TrainingCompletion {
            user: user.to_owned(),
            module: module.to_owned(),
            completed_at: Some(at),
        });
    }
    if completions.is_empty() {
        return Err(format!("{file}: no completions after the header"));
    }
    Ok(completions)
}

pub async fn run(args: &ClientArgs, command: TrainingCommand) -> Result<()> {
    let client = client(args)?;
    match command {
        TrainingCommand::Module(ModuleCommand::Add { name, valid_for }) => {
            let module = client
                .create_training_module(&CreateTrainingModule { name, valid_for })
                .await?;
            println!("{} (valid for {})", module.name, module.valid_for);
        }
        TrainingCommand::Module(ModuleCommand::List { json }) => {
            let list = client.training_modules().await?;
            if json {
                return output::json(&list);
            }
            let rows: Vec<Vec<String>> = list
                .modules
                .iter()
                .map(|m| vec![m.name.clone(), m.valid_for.clone()])
                .collect();
            output::table(&["MODULE", "VALID FOR"], &rows);
        }
        TrainingCommand::Record { user, module, on } => {
            let at = on
                .map(|text| completed_at(&text).map_err(anyhow::Error::msg))
                .transpose()?;
            let recorded = client
                .record_training(&RecordTraining {
                    completions: vec![TrainingCompletion {
                        user,
                        module,
                        completed_at: at,
                    }],
                })
                .await?;
            println!("recorded {}", recorded.recorded);
        }
        TrainingCommand::Import { file } => {
            let name = file.display().to_string();
            let text = std::fs::read_to_string(&file).with_context(|| format!("reading {name}"))?;
            let completions = parse_csv(&text, &name).map_err(anyhow::Error::msg)?;
            let recorded = client
                .record_training(&RecordTraining { completions })
                .await?;
            println!("recorded {}", recorded.recorded);
        }
        TrainingCommand::Status { user, json } => {
            let status = client.training_status(user.as_deref()).await?;
            if json {
                return output::json(&status);
            }
            let mut rows = Vec::new();
            for user in &status.users {
                for module in &user.modules {
                    rows.push(vec![
                        user.user.clone(),
                        module.module.clone(),
                        module.state.clone(),
                        output::optional_time(module.expires_at),
                        if module.required { "yes" } else { "" }.to_owned(),
                    ]);
                }
            }
            output::table(&["USER", "MODULE", "STATE", "UNTIL", "REQUIRED"], &rows);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_imports_name_their_bad_line() {
        let good = "user,module,completed_on\nalice,basics,2026-01-15\n\nbob,basics,2026-02-01T10:00:00Z\n";
        let parsed = parse_csv(good, "t.csv").expect("parses");
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].user, "alice");
        assert_eq!(
            parse_csv("name,module\n", "t.csv").unwrap_err(),
            "t.csv:1: the header must be user,module,completed_on"
        );
        assert_eq!(
            parse_csv("user,module,completed_on\nalice,basics\n", "t.csv").unwrap_err(),
            "t.csv:2: expected 3 fields (user,module,completed_on), found 2"
        );
        assert!(
            parse_csv(
                "user,module,completed_on\nalice,basics,yesterday\n",
                "t.csv"
            )
            .unwrap_err()
            .starts_with("t.csv:2: ")
        );
        assert!(parse_csv("user,module,completed_on\n", "t.csv").is_err());
    }
}
