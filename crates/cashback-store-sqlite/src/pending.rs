//! Dedup keys of the files being ingested (status PROCESSING), held by the writer thread.
//!
//! A file's rows are appended to `acquirer_transaction` chunk by chunk, but their keys join the
//! `acquirer_transaction_key` b-tree only when the file is finished, in key order (see migration
//! 0004). Until then the writer answers "seen before?" from these sets plus that table. The sets
//! are rebuilt from the stored rows the first time the writer needs them after opening the
//! database, so a restart mid-file loses nothing.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use rusqlite::Connection;

/// Dedup keys are SHA-256 prefixes, already uniform: their first 8 bytes are the hash.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
        }
    }
}

pub type KeySet = HashSet<[u8; 16], BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
pub struct PendingKeys {
    loaded: bool,
    files: HashMap<i64, KeySet>,
}

impl PendingKeys {
    /// Load the keys of every PROCESSING file, once per process.
    pub fn ensure_loaded(&mut self, c: &Connection) -> rusqlite::Result<()> {
        if self.loaded {
            return Ok(());
        }
        let mut st = c.prepare(
            "SELECT t.file_id, t.dedup_key FROM acquirer_file f JOIN acquirer_transaction t ON t.file_id = f.id \
             WHERE f.status = 'PROCESSING'",
        )?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let key: [u8; 16] =
                r.get_ref(1)?.as_blob()?.try_into().map_err(|_| {
                    rusqlite::Error::InvalidColumnType(1, "dedup_key".into(), rusqlite::types::Type::Blob)
                })?;
            self.files.entry(r.get(0)?).or_default().insert(key);
        }
        self.loaded = true;
        Ok(())
    }

    /// Whether a PROCESSING file already holds `key`.
    pub fn contains(&self, key: &[u8; 16]) -> bool {
        self.files.values().any(|s| s.contains(key))
    }

    pub fn file(&mut self, file_id: i64) -> &mut KeySet {
        self.files.entry(file_id).or_default()
    }

    /// Forget a file's keys (they are in the key table now, or its rows are gone).
    pub fn take(&mut self, file_id: i64) -> Option<KeySet> {
        self.files.remove(&file_id)
    }

    /// Forget everything (a commit failed: the sets may hold keys of rows that were not stored);
    /// the next chunk reloads them from the database.
    pub fn invalidate(&mut self) {
        self.loaded = false;
        self.files.clear();
    }
}
