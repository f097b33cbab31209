//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::io::{self, Read};
use std::path::PathBuf;

use cashback_pgp::{PgpError, PlatformKey};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

pub fn fixture_str(name: &str) -> String {
    String::from_utf8(fixture(name)).expect("fixture is UTF-8")
}

/// Decrypts `ciphertext` completely, reading 64 KiB at a time; errors from `decrypt` and from `read`
/// both come back as `PgpError`.
pub fn decrypt_all(key: &PlatformKey, ciphertext: &[u8]) -> Result<Vec<u8>, PgpError> {
    let mut reader = key.decrypt(ciphertext)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(PgpError::from_io(e)),
        }
    }
}

/// A deterministic generator of `;`-separated transaction lines, `len` bytes in all, produced on the fly.
pub struct CsvGen {
    remaining: u64,
    line: Vec<u8>,
    pos: usize,
    n: u64,
    state: u64,
}

impl CsvGen {
    pub fn new(len: u64) -> CsvGen {
        CsvGen { remaining: len, line: Vec::new(), pos: 0, n: 0, state: 0x9E37_79B9_7F4A_7C15 }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn refill(&mut self) {
        self.n += 1;
        let (a, b, c, d) = (self.next_random(), self.next_random(), self.next_random(), self.next_random());
        self.line = format!(
            "32875;0{};01;{a:016x}{b:016x}{c:016x}{d:016x};2026-03-{:02}T{:02}:{:02}:{:02}.000+01:00;{:012};ISS{:06};;{};978;32875;MER{:04};TERM{:04};45678901;{};;12345678901;00;\n",
            a % 2,
            b % 28 + 1,
            c % 24,
            d % 60,
            a % 60,
            self.n,
            b % 1_000_000,
            c % 100_000,
            d % 5000,
            a % 9000,
            5411 + b % 300,
        )
        .into_bytes();
        self.pos = 0;
    }
}

impl Read for CsvGen {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.pos == self.line.len() {
            self.refill();
        }
        let n = buf.len().min(self.line.len() - self.pos).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        buf[..n].copy_from_slice(&self.line[self.pos..self.pos + n]);
        self.pos += n;
        self.remaining -= n as u64;
        Ok(n)
    }
}
