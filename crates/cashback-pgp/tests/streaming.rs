//! Round trip of a 64 MiB file, decrypted as a stream (tests 1 and 6 of the brief).

mod common;

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use cashback_pgp::{PgpError, PlatformKey, RecipientKey};
use common::CsvGen;
use sha2::{Digest, Sha256};

const PLAINTEXT_LEN: u64 = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Passes bytes through and hashes them.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A ciphertext source that counts how much of it has been consumed.
struct Counting<'a> {
    data: &'a [u8],
    consumed: Arc<AtomicU64>,
}

impl Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

#[test]
fn sixty_four_mib_round_trip_is_streamed() {
    let started = Instant::now();
    let platform = PlatformKey::generate("Cashback test <pgp-test@cashback.invalid>").unwrap();
    let recipient = RecipientKey::from_armored(&platform.public_key_armored()).unwrap();
    assert_eq!(recipient.fingerprint_hex(), platform.fingerprint_hex());

    // Encrypt: the plaintext is generated on the fly and hashed as it is consumed.
    let mut source = Hashing { inner: CsvGen::new(PLAINTEXT_LEN), hasher: Sha256::new() };
    let mut ciphertext = Vec::new();
    let t = Instant::now();
    recipient.encrypt(&mut source, &mut ciphertext).unwrap();
    let encrypt_time = t.elapsed();
    let expected = source.hasher.finalize();
    eprintln!(
        "encrypted {} MiB into {:.1} MiB in {encrypt_time:.2?} ({:.1} MiB/s)",
        PLAINTEXT_LEN >> 20,
        ciphertext.len() as f64 / 1048576.0,
        PLAINTEXT_LEN as f64 / 1048576.0 / encrypt_time.as_secs_f64()
    );
    assert!(ciphertext.len() > 1 << 20, "suspiciously small ciphertext");

    // Decrypt: 64 KiB reads into one fixed buffer, hashed as they come; nothing accumulates.
    let consumed = Arc::new(AtomicU64::new(0));
    let input = Counting { data: &ciphertext, consumed: consumed.clone() };
    let t = Instant::now();
    let mut reader = platform.decrypt(input).unwrap();
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut consumed_at_first_data = None;
    loop {
        let n = reader.read(&mut buf).map_err(PgpError::from_io).unwrap();
        if n == 0 {
            break;
        }
        consumed_at_first_data.get_or_insert(consumed.load(Ordering::Relaxed));
        assert!(n <= CHUNK);
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    let decrypt_time = t.elapsed();
    drop(reader);

    eprintln!(
        "decrypted {} MiB in {decrypt_time:.2?} ({:.1} MiB/s plaintext, SHA-256 included); first plaintext after {} KiB of {} KiB ciphertext; total test {:.2?}",
        total >> 20,
        total as f64 / 1048576.0 / decrypt_time.as_secs_f64(),
        consumed_at_first_data.unwrap_or(0) >> 10,
        ciphertext.len() >> 10,
        started.elapsed()
    );

    assert_eq!(total, PLAINTEXT_LEN);
    assert_eq!(hasher.finalize(), expected, "plaintext differs");
    // Streaming proof: the first plaintext came out after reading a small prefix of the ciphertext.
    // A decryptor that buffers the message (e.g. to check the MDC first) would have consumed all of it.
    let first = consumed_at_first_data.unwrap();
    assert!(first <= 1024 * 1024, "first plaintext only after {first} bytes of ciphertext: not streaming");
    assert_eq!(consumed.load(Ordering::Relaxed), ciphertext.len() as u64, "ciphertext not fully consumed");
}
