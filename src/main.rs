//! The `rotator` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: on the forwarding path glibc's malloc/free took
/// about a sixth of the CPU (perf), and mimalloc raised forwarded throughput by ~12 % in
/// `benches/forwarding.rs`. Built with `no_thp`: otherwise it asks for transparent huge pages
/// on its arenas, and a 2 MiB page per touched region nearly doubled idle RSS ("Idle
/// footprint" in `docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match rotator::cli::parse(std::env::args_os().collect()) {
        Ok(cli) => rotator::cli::run(cli),
        Err(code) => code,
    }
}
