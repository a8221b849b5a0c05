//! `rempart`: one binary, one subcommand per role.
//!
//! This crate is glue: it parses the command line, sets up logging, and calls
//! the server or the API client. Failures print one line and exit 1; usage
//! errors exit 2 (clap's convention).
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    cli::logging::init(args.log_format, args.command.is_service());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` joins the causes on one line: "opening the store: ...".
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
