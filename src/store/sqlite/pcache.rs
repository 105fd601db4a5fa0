//! A thin wrapper around SQLite's own page cache (`pcache1`) that skips a needless scan.
//!
//! When a b-tree rebalance reorders its new pages (`balance_nonroot`), SQLite gives one page
//! the lock-byte page's number (just past 1 GiB) for a moment. `pcache1` remembers the
//! largest page number it has ever held, and at the end of every write transaction the
//! pager asks it to drop the pages past the file's end (`xTruncate`). While that remembered
//! number is far past the end, `pcache1` walks its whole hash table to find them, though
//! there are none: on the intake writer that walk was 6 % of the thread's time under
//! `benches/load.sh`, at nearly every commit, for as long as the database is under 1 GiB.
//!
//! The wrapper forwards every call to `pcache1` and keeps its own largest page number,
//! leaving out that temporary number (a real page never has it: it is the lock-byte page,
//! which SQLite never uses). A truncation that can drop nothing is not forwarded. Pages,
//! their memory and everything else stay `pcache1`'s.

use rusqlite::ffi::{sqlite3_pcache, sqlite3_pcache_methods2, sqlite3_pcache_page};
use std::ffi::{c_int, c_uint, c_void};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// SQLite's default page cache, as it was before [`install`].
static INNER: OnceLock<Methods> = OnceLock::new();

/// Truncations forwarded to `pcache1` and skipped, for tests.
static FORWARDED: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);
/// Pages given the temporary number of a rebalance, for tests.
static TEMP_REKEYS: AtomicU64 = AtomicU64::new(0);

struct Methods(sqlite3_pcache_methods2);
// SAFETY: the struct holds function pointers and `pArg`, which `pcache1` does not use
// (it is null); SQLite itself shares these methods between all threads.
unsafe impl Send for Methods {}
unsafe impl Sync for Methods {}

fn inner() -> &'static sqlite3_pcache_methods2 {
    &INNER.get().expect("page cache wrapper installed").0
}

/// One page cache: `pcache1`'s and the largest page number it may hold.
struct Cache {
    inner: *mut sqlite3_pcache,
    /// The lock-byte page's number at this page size: the temporary number of a rebalance.
    temp: c_uint,
    /// No page with a larger number is in the cache (apart from `temp`, briefly).
    max_key: AtomicU32,
}

impl Cache {
    fn saw(&self, key: c_uint) {
        // A load and a store, not a read-modify-write: SQLite serialises the calls on one
        // cache (the connection's or the shared cache's mutex), and this runs at every
        // page fetch.
        if key != self.temp && key > self.max_key.load(Ordering::Relaxed) {
            self.max_key.store(key, Ordering::Relaxed);
        }
    }
}

/// The lock-byte page's number for `page_size` (SQLite's `PENDING_BYTE / pageSize + 1`).
fn lock_byte_page(page_size: c_int) -> c_uint {
    const PENDING_BYTE: u32 = 0x4000_0000;
    PENDING_BYTE / (page_size.max(1) as u32) + 1
}

/// Installs the wrapper. Must run before SQLite is initialised; returns SQLite's result code
/// (`SQLITE_MISUSE` if SQLite was initialised already, and then nothing changes).
pub(crate) fn install() -> c_int {
    let mut current = std::mem::MaybeUninit::<sqlite3_pcache_methods2>::zeroed();
    // SAFETY: `SQLITE_CONFIG_GETPCACHE2` writes the current methods into the struct passed.
    let rc = unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_GETPCACHE2,
            current.as_mut_ptr(),
        )
    };
    if rc != rusqlite::ffi::SQLITE_OK {
        return rc;
    }
    // SAFETY: SQLite filled it in (it sets the default page cache up first if need be).
    let current = unsafe { current.assume_init() };
    if current.xCreate.is_none() || INNER.set(Methods(current)).is_err() {
        return rusqlite::ffi::SQLITE_MISUSE;
    }
    let ours = sqlite3_pcache_methods2 {
        iVersion: 1,
        pArg: std::ptr::null_mut(),
        xInit: Some(x_init),
        xShutdown: Some(x_shutdown),
        xCreate: Some(x_create),
        xCachesize: Some(x_cachesize),
        xPagecount: Some(x_pagecount),
        xFetch: Some(x_fetch),
        xUnpin: Some(x_unpin),
        xRekey: Some(x_rekey),
        xTruncate: Some(x_truncate),
        xDestroy: Some(x_destroy),
        xShrink: Some(x_shrink),
    };
    // SAFETY: SQLite copies the struct; every function below forwards to `pcache1`.
    unsafe {
        rusqlite::ffi::sqlite3_config(
            rusqlite::ffi::SQLITE_CONFIG_PCACHE2,
            &ours as *const sqlite3_pcache_methods2,
        )
    }
}

/// (forwarded, skipped) truncations and rebalance renumberings so far in this process.
#[cfg(test)]
pub(crate) fn counts() -> (u64, u64, u64) {
    (
        FORWARDED.load(Ordering::Relaxed),
        SKIPPED.load(Ordering::Relaxed),
        TEMP_REKEYS.load(Ordering::Relaxed),
    )
}

/// # Safety
/// `p` is a pointer [`x_create`] returned and SQLite has not destroyed yet.
unsafe fn cache<'a>(p: *mut sqlite3_pcache) -> &'a Cache {
    unsafe { &*(p as *const Cache) }
}

unsafe extern "C" fn x_init(_arg: *mut c_void) -> c_int {
    let m = inner();
    match m.xInit {
        Some(f) => unsafe { f(m.pArg) },
        None => rusqlite::ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn x_shutdown(_arg: *mut c_void) {
    let m = inner();
    if let Some(f) = m.xShutdown {
        unsafe { f(m.pArg) }
    }
}

// SAFETY (all below): SQLite calls these with a cache pointer `x_create` returned and not yet
// destroyed, and page pointers `pcache1` handed out for that cache; each call is forwarded
// to `pcache1` with its own cache pointer, as `pcache1`'s contract asks.

unsafe extern "C" fn x_create(
    sz_page: c_int,
    sz_extra: c_int,
    purgeable: c_int,
) -> *mut sqlite3_pcache {
    let inner_cache = unsafe { (inner().xCreate.expect("xCreate"))(sz_page, sz_extra, purgeable) };
    if inner_cache.is_null() {
        return std::ptr::null_mut();
    }
    Box::into_raw(Box::new(Cache {
        inner: inner_cache,
        temp: lock_byte_page(sz_page),
        max_key: AtomicU32::new(0),
    })) as *mut sqlite3_pcache
}

unsafe extern "C" fn x_cachesize(p: *mut sqlite3_pcache, n: c_int) {
    unsafe { (inner().xCachesize.expect("xCachesize"))(cache(p).inner, n) }
}

unsafe extern "C" fn x_pagecount(p: *mut sqlite3_pcache) -> c_int {
    unsafe { (inner().xPagecount.expect("xPagecount"))(cache(p).inner) }
}

unsafe extern "C" fn x_fetch(
    p: *mut sqlite3_pcache,
    key: c_uint,
    create: c_int,
) -> *mut sqlite3_pcache_page {
    let c = unsafe { cache(p) };
    let page = unsafe { (inner().xFetch.expect("xFetch"))(c.inner, key, create) };
    if !page.is_null() {
        c.saw(key);
    }
    page
}

unsafe extern "C" fn x_unpin(
    p: *mut sqlite3_pcache,
    page: *mut sqlite3_pcache_page,
    discard: c_int,
) {
    unsafe { (inner().xUnpin.expect("xUnpin"))(cache(p).inner, page, discard) }
}

unsafe extern "C" fn x_rekey(
    p: *mut sqlite3_pcache,
    page: *mut sqlite3_pcache_page,
    old: c_uint,
    new: c_uint,
) {
    let c = unsafe { cache(p) };
    unsafe { (inner().xRekey.expect("xRekey"))(c.inner, page, old, new) };
    if new == c.temp {
        TEMP_REKEYS.fetch_add(1, Ordering::Relaxed);
    }
    c.saw(new);
}

unsafe extern "C" fn x_truncate(p: *mut sqlite3_pcache, limit: c_uint) {
    let c = unsafe { cache(p) };
    // Pages numbered `limit` and up are dropped; with none in the cache there is nothing to
    // do (and `pcache1` might walk its whole hash table to find that out).
    if limit > c.max_key.load(Ordering::Relaxed) {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    FORWARDED.fetch_add(1, Ordering::Relaxed);
    unsafe { (inner().xTruncate.expect("xTruncate"))(c.inner, limit) };
    c.max_key.store(limit.saturating_sub(1), Ordering::Relaxed);
}

unsafe extern "C" fn x_destroy(p: *mut sqlite3_pcache) {
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    unsafe { (inner().xDestroy.expect("xDestroy"))(c.inner) };
}

unsafe extern "C" fn x_shrink(p: *mut sqlite3_pcache) {
    unsafe { (inner().xShrink.expect("xShrink"))(cache(p).inner) }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    /// In a fresh process (this test binary run again for the child test alone, so that the
    /// wrapper goes in before SQLite initialises), random index inserts with rebalances,
    /// a rolled-back growth of the file and a reopen keep every row and an intact file, and
    /// most end-of-transaction truncations are skipped.
    #[test]
    fn the_wrapped_page_cache_keeps_data_and_skips_idle_truncations() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "store::sqlite::pcache::tests::pcache_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SB_PCACHE_CHILD", "1")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("pcache child: ok"), "{text}");
    }

    fn assert_intact(c: &Connection) {
        let check: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
    }

    fn count(c: &Connection) -> i64 {
        c.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn pcache_child() {
        if std::env::var("SB_PCACHE_CHILD").is_err() {
            return;
        }
        assert_eq!(super::install(), rusqlite::ffi::SQLITE_OK);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.db");
        let c = Connection::open(&path).unwrap();
        c.pragma_update(None, "journal_mode", "WAL").unwrap();
        c.pragma_update(None, "cache_size", -2048).unwrap();
        c.execute_batch(
            "CREATE TABLE t (k TEXT NOT NULL, v BLOB); CREATE UNIQUE INDEX t_k ON t (k);",
        )
        .unwrap();
        // Random keys: index inserts at random places, so rebalances reorder pages.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut rows = 0i64;
        for _ in 0..200 {
            let tx = c.unchecked_transaction().unwrap();
            for _ in 0..50 {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, zeroblob(200))",
                    [format!("{:016x}", next())],
                )
                .unwrap();
                rows += 1;
            }
            tx.commit().unwrap();
        }
        let (forwarded, skipped, renumbered) = super::counts();
        println!("pcache child: forwarded {forwarded}, skipped {skipped}, renumbered {renumbered}");
        // The case the wrapper is for happened: rebalances gave pages the temporary number.
        assert!(renumbered > 20, "few rebalance renumberings: {renumbered}");
        assert!(skipped > 150, "few truncations skipped: {skipped}");
        assert!(
            forwarded < skipped,
            "{forwarded} forwarded, {skipped} skipped"
        );

        // A transaction that grows the file, rolled back: its pages past the old end must
        // leave the cache (the truncation is forwarded), and the next writes reuse them.
        let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let tx = c.unchecked_transaction().unwrap();
        for i in 0..2000 {
            tx.execute(
                "INSERT INTO t (k, v) VALUES (?1, randomblob(300))",
                [format!("rolled-back-{i:06}")],
            )
            .unwrap();
        }
        tx.rollback().unwrap();
        assert_eq!(count(&c), rows);
        let after: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        assert_eq!(after, pages);
        for _ in 0..20 {
            let tx = c.unchecked_transaction().unwrap();
            for _ in 0..100 {
                tx.execute(
                    "INSERT INTO t (k, v) VALUES (?1, randomblob(300))",
                    [format!("{:016x}", next())],
                )
                .unwrap();
                rows += 1;
            }
            tx.commit().unwrap();
        }
        assert_intact(&c);
        assert_eq!(count(&c), rows);
        drop(c);
        let c = Connection::open(&path).unwrap();
        assert_eq!(count(&c), rows);
        assert_intact(&c);
        println!("pcache child: ok");
    }
}
