//! `lvsadm`: ipvsadm's commands, options and layouts, against the lvs daemon.

use std::{io::Read as _, process::ExitCode};

use clap::Parser as _;
use lvs_userspace::{
    cli::lvsadm::{self, Outcome, system_names::SystemNames},
    logic::ipvsadm::{Args, Command},
};

/// ipvsadm's exit status for a command line it rejects.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut stdout = std::io::stdout().lock();
    if args.generate_man {
        return exit(lvsadm::man_page(&mut stdout).map(|()| Outcome::Done));
    }
    if let Some(shell) = args.generate_completions {
        lvsadm::completions(shell, &mut stdout);
        return ExitCode::SUCCESS;
    }
    let names = SystemNames;
    let command = match Command::from_args(&args, &names) {
        Ok(command) => command,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("lvsadm: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let read_rules = || {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map(|_| text)
    };
    let mut stderr = std::io::stderr().lock();
    exit(runtime.block_on(lvsadm::run(
        command,
        &args.socket,
        &names,
        read_rules,
        &mut stdout,
        &mut stderr,
    )))
}

fn exit(outcome: std::io::Result<Outcome>) -> ExitCode {
    match outcome {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Usage) => ExitCode::from(EXIT_USAGE),
        Ok(Outcome::Failed) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("lvsadm: {error}");
            ExitCode::FAILURE
        }
    }
}
