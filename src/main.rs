//! The `rotator` binary: parses the command line and hands over to the library.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: on the forwarding path glibc's malloc/free took
/// about a sixth of the CPU (perf), and mimalloc raised forwarded throughput by ~12 % in
/// `benches/forwarding.rs`. Built with `no_thp`: otherwise it asks for transparent huge pages
/// on its arenas, and a 2 MiB page per touched region nearly doubled idle RSS ("Idle
/// footprint" in `docs/benchmarks.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in the linked mimalloc (v3's `mimalloc.h`; the binding names the
/// options around it but not this one). The test below checks it against v3's default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long mimalloc waits before returning freed pages to the OS: v2's default. v3's default
/// (1 s, and 10× that for whole arenas) is only acted on when the thread that freed the pages
/// allocates again; the thread that parsed the configuration never does, so with 10,000
/// rotations the ~80 MB the parse freed stayed resident for good (about 1 KB of RSS per
/// registered rotation in `benches/scale.rs`).
const PURGE_DELAY_MS: std::ffi::c_long = 10;

/// Sets mimalloc's purge delay before anything large is allocated and freed.
#[allow(unsafe_code)]
fn tune_allocator() {
    // SAFETY: `mi_option_set` stores a number in mimalloc's option table; it is called once, on
    // the main thread, before any other thread exists, with an option id of the linked version.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
}

fn main() -> ExitCode {
    tune_allocator();
    match rotator::cli::parse(std::env::args_os().collect()) {
        Ok(cli) => rotator::cli::run(cli),
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option id is mimalloc v3's purge delay: it reads v3's documented default (1,000 ms)
    /// until set, then the value set. Fails when an upgrade moves the option.
    #[test]
    #[allow(unsafe_code)]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: reads and writes mimalloc's option table, as `tune_allocator` does.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(before, 1000, "not mimalloc v3's purge delay default");
        tune_allocator();
        // SAFETY: as above.
        let after = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(after, PURGE_DELAY_MS);
    }
}
