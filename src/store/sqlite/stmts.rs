//! The writer's prepared statements, kept for the connection's life and found by the address
//! of their `&'static str` text (`crate::store::sql`).
//!
//! rusqlite's `prepare_cached` finds a statement by hashing its whole SQL text, and hashes it
//! again when the statement goes back into its LRU cache: with our statements of 100 to 300
//! bytes, that was about 20,000 instructions a message on the writer thread (callgrind, about
//! 11 % of the thread's work) for eight statements. Here the key is the text's address and
//! length (the texts are `static`s, so each has one address; a `const` may get a copy per
//! place it is used, which would only prepare it once per place), and a statement goes back
//! as it is: rusqlite resets it after each run, and each run binds every parameter again (it
//! refuses a run with fewer), so no binding carries over. Text built at run time
//! (`sql::opted_out_among`) still goes through `prepare_cached` on the connection
//! ([`WriterDb`] dereferences to it).
//!
//! Unlike `prepare_cached`, a statement keeps its last bound values until its next run (a
//! copy of the last row it wrote: at most one value per parameter, an email's raw payload at
//! most the intake's size cap). They are the rows SQLite's page cache holds anyway; clearing
//! them after every run would cost about 2 % of the writer's instructions.

use rusqlite::{Connection, Statement};
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};

/// A statement's key: its text's address and length.
type Key = (usize, usize);
type Kept<'c> = HashMap<Key, Statement<'c>, BuildHasherDefault<AddrHasher>>;

/// A multiply-rotate hash of the two words of a [`Key`] (SipHash, the default, cost more
/// than the rest of the lookup).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_usize(b as usize);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0.rotate_left(5) ^ n as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The writer's connection with its statements.
pub struct WriterDb<'c> {
    conn: &'c Connection,
    cache: RefCell<Kept<'c>>,
}

impl<'c> WriterDb<'c> {
    pub fn new(conn: &'c Connection) -> WriterDb<'c> {
        WriterDb {
            conn,
            cache: RefCell::new(Kept::default()),
        }
    }

    /// The prepared statement of `sql`: the kept one, or prepared now and kept once it is
    /// dropped. Two at once of the same text get two statements (the second is prepared).
    ///
    /// # Errors
    /// SQLite refuses the text.
    pub fn st(&self, sql: &'static str) -> rusqlite::Result<Stmt<'_, 'c>> {
        let key = (sql.as_ptr() as usize, sql.len());
        let kept = self.cache.borrow_mut().remove(&key);
        let stmt = match kept {
            Some(s) => s,
            None => self.conn.prepare(sql)?,
        };
        Ok(Stmt {
            stmt: Some(stmt),
            key,
            home: &self.cache,
        })
    }

    /// How many statements are kept (tests).
    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.cache.borrow().len()
    }
}

impl Deref for WriterDb<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

/// A statement on loan from [`WriterDb`]; it goes back when dropped.
pub struct Stmt<'a, 'c> {
    stmt: Option<Statement<'c>>,
    key: Key,
    home: &'a RefCell<Kept<'c>>,
}

impl<'c> Deref for Stmt<'_, 'c> {
    type Target = Statement<'c>;
    fn deref(&self) -> &Statement<'c> {
        self.stmt.as_ref().expect("a statement until dropped")
    }
}

impl<'c> DerefMut for Stmt<'_, 'c> {
    fn deref_mut(&mut self) -> &mut Statement<'c> {
        self.stmt.as_mut().expect("a statement until dropped")
    }
}

impl Drop for Stmt<'_, '_> {
    fn drop(&mut self) {
        if let Some(s) = self.stmt.take() {
            // A statement left mid-query (its rows not read to the end) is reset by rusqlite
            // when its `Rows` drop; an execute resets it itself.
            self.home.borrow_mut().insert(self.key, s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::params;

    const INSERT: &str = "INSERT INTO t (a, b) VALUES (?1, ?2)";

    fn conn_with(schema: &str) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(schema).unwrap();
        conn
    }
    const SELECT: &str = "SELECT a, b FROM t WHERE a >= ?1 ORDER BY a";

    #[test]
    fn a_kept_statement_runs_again_with_new_parameters_and_nothing_carried_over() {
        let conn = conn_with("CREATE TABLE t (a INTEGER, b TEXT)");
        let db = WriterDb::new(&conn);
        for i in 0..5 {
            db.st(INSERT)
                .unwrap()
                .execute(params![i, format!("v{i}")])
                .unwrap();
        }
        // Fewer parameters than the statement has is refused, never a stale binding used.
        assert!(db.st(INSERT).unwrap().execute(params![9]).is_err());
        assert_eq!(db.kept(), 1);
        // A query left after its first row, then run again from the start.
        let first: i64 = db
            .st(SELECT)
            .unwrap()
            .query_row(params![2], |r| r.get(0))
            .unwrap();
        assert_eq!(first, 2);
        let all: Vec<(i64, String)> = db
            .st(SELECT)
            .unwrap()
            .query_map(params![0], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[4], (4, "v4".to_string()));
        // Two loans of one text at once: both work, one is kept after.
        let mut a = db.st(SELECT).unwrap();
        let mut b = db.st(SELECT).unwrap();
        let na = a.query_map(params![3], |_| Ok(())).unwrap().count();
        let nb = b.query_map(params![1], |_| Ok(())).unwrap().count();
        assert_eq!((na, nb), (2, 4));
        drop((a, b));
        assert_eq!(db.kept(), 2);
        // Inside a transaction that rolls back, then outside it.
        let tx =
            rusqlite::Transaction::new_unchecked(&db, rusqlite::TransactionBehavior::Immediate)
                .unwrap();
        db.st(INSERT).unwrap().execute(params![7, "x"]).unwrap();
        drop(tx);
        let n: i64 = db
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 5);
    }

    #[test]
    fn a_shared_text_used_from_several_places_is_one_statement() {
        let conn = conn_with("CREATE TABLE outbox (message_id INTEGER PRIMARY KEY)");
        let db = WriterDb::new(&conn);
        let here = |db: &WriterDb<'_>| {
            db.st(crate::store::sql::DELETE_OUTBOX)
                .unwrap()
                .execute([1])
                .unwrap();
        };
        here(&db);
        db.st(crate::store::sql::DELETE_OUTBOX)
            .unwrap()
            .execute([2])
            .unwrap();
        fn there(db: &WriterDb<'_>) {
            db.st(crate::store::sql::DELETE_OUTBOX)
                .unwrap()
                .execute([3])
                .unwrap();
        }
        there(&db);
        assert_eq!(db.kept(), 1);
    }

    #[test]
    fn a_schema_change_after_a_statement_was_kept_is_seen() {
        let conn = conn_with("CREATE TABLE t (a INTEGER, b TEXT)");
        let db = WriterDb::new(&conn);
        db.st(INSERT).unwrap().execute(params![1, "a"]).unwrap();
        db.execute_batch("ALTER TABLE t ADD COLUMN c TEXT DEFAULT 'z'; CREATE INDEX t_b ON t (b)")
            .unwrap();
        db.st(INSERT).unwrap().execute(params![2, "b"]).unwrap();
        let n: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM t WHERE b = 'b' AND c = 'z'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 1);
    }
}
