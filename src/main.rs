//! The `rotator` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    rotator::cli::run(rotator::cli::Cli::parse())
}
