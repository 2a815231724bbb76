//! The heap a registered local rotation keeps: its configuration and its built driver, counted
//! by a wrapping allocator (bytes asked for, so the figure is the same on every run). Issue 12
//! budgets 2 KB of RSS per registered rotation; the allocator's pages and SQLite's caches come
//! on top of this live heap (docs/benchmarks.md, Scale), so it has to stay well under that.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use rotator::config::{Config, Env};
use rotator::local::LocalBackend;
use rotator::store::Store;
use rotator_testkit::local_server::KEY;
use rotator_testkit::private_redis::many_rotations_toml;

/// Counts the bytes allocated and not yet freed.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is kept.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap per registered rotation, at most: 988 bytes were measured before the rarely
/// declared fields moved behind one box and the password policy stopped copying the default
/// alphabet, 815 after.
const BUDGET_PER_ROTATION: isize = 850;

/// Live bytes held by the configuration and the local backend built from it, with `count`
/// rotations registered.
fn kept_with(count: usize, store: &Store) -> isize {
    let env: Env = [("ROTATOR_ENCRYPTION_KEY", KEY), ("REDIS_ADMIN", "not-used")]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // The scale bench's registry (`benches/scale.rs`): Redis rotations on one connection.
    let text = many_rotations_toml(6399, 16, count);
    let before = LIVE.load(Ordering::Relaxed);
    let mut config = Config::from_toml_str(&text, &env).expect("config");
    let registry = std::mem::take(&mut config.local);
    let backend = LocalBackend::new(registry, store.clone()).expect("backend");
    let kept = LIVE.load(Ordering::Relaxed) - before;
    drop((backend, config));
    kept
}

#[tokio::test(flavor = "current_thread")]
async fn a_registered_rotation_keeps_little_heap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_sqlite(dir.path()).await.expect("store");
    // Two sizes, so what every configuration keeps whatever its size cancels out.
    let small = kept_with(1_000, &store);
    let large = kept_with(3_000, &store);
    let per_rotation = (large - small) / 2_000;
    eprintln!("live heap per registered rotation: {per_rotation} bytes");
    assert!(
        per_rotation <= BUDGET_PER_ROTATION,
        "{per_rotation} bytes per registered rotation (budget {BUDGET_PER_ROTATION})"
    );
}
