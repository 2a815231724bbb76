//! The `rotator` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: on the forwarding path glibc's malloc/free took
/// about a sixth of the CPU (perf), and mimalloc raised forwarded throughput by ~12 % in
/// `benches/forwarding.rs`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    rotator::cli::run(rotator::cli::Cli::parse())
}
