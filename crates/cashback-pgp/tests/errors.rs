//! Error classification: wrong key, garbage, truncation, tampering, empty and unencrypted input
//! (tests 2, 3 and 4 of the brief).

mod common;

use std::io::Read;
use std::time::Instant;

use cashback_pgp::{PgpError, PlatformKey, RecipientKey};
use common::{CsvGen, decrypt_all, fixture_str};
use pgp::composed::{Deserializable, MessageBuilder, SignedSecretKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::types::{CompressionAlgorithm, Password};

fn key() -> PlatformKey {
    PlatformKey::generate("Cashback test <pgp-test@cashback.invalid>").unwrap()
}

fn encrypt_to(key: &PlatformKey, plaintext: &[u8]) -> Vec<u8> {
    let recipient = RecipientKey::from_armored(&key.public_key_armored()).unwrap();
    let mut out = Vec::new();
    recipient.encrypt(plaintext, &mut out).unwrap();
    out
}

fn sample(len: u64) -> Vec<u8> {
    let mut out = Vec::new();
    CsvGen::new(len).read_to_end(&mut out).unwrap();
    out
}

#[test]
fn generate_is_fast_and_round_trips_through_armour() {
    let t = Instant::now();
    let key = key();
    let elapsed = t.elapsed();
    eprintln!("PlatformKey::generate took {elapsed:?}");
    assert!(elapsed.as_secs() < 5, "generate took {elapsed:?}");

    let fingerprint = key.fingerprint_hex();
    assert_eq!(fingerprint.len(), 40);
    assert!(fingerprint.chars().all(|c| c.is_ascii_digit() || ('A'..='F').contains(&c)));
    assert!(key.public_key_armored().starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
    assert!(key.to_armored().starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));

    let reloaded = PlatformKey::from_armored(&key.to_armored(), None).unwrap();
    assert_eq!(reloaded.fingerprint_hex(), fingerprint);
    let ciphertext = encrypt_to(&key, b"a;b;c\n");
    assert_eq!(decrypt_all(&reloaded, &ciphertext).unwrap(), b"a;b;c\n");
}

#[test]
fn wrong_key() {
    let (a, b) = (key(), key());
    let ciphertext = encrypt_to(&a, b"1;2;3\n");
    assert!(matches!(decrypt_all(&b, &ciphertext), Err(PgpError::WrongKey)));
    assert!(matches!(b.decrypt(&ciphertext[..]).map(|_| ()), Err(PgpError::WrongKey)));
    assert_eq!(decrypt_all(&a, &ciphertext).unwrap(), b"1;2;3\n");
}

#[test]
fn empty_input() {
    let key = key();
    assert!(matches!(key.decrypt(&b""[..]).map(|_| ()), Err(PgpError::Empty)));
}

#[test]
fn unencrypted_csv_is_explained() {
    let key = key();
    match key.decrypt(&b"acquirer_code;operation_type\n32875;00\n"[..]).map(|_| ()) {
        Err(err @ PgpError::Malformed(_)) => assert!(err.to_string().contains("plain text"), "{err}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn garbage_input() {
    let key = key();
    let inputs: Vec<Vec<u8>> = vec![
        b"acquirer_code;operation_type\n32875;00\n".to_vec(),
        b"-----BEGIN PGP MESSAGE-----\n\nnot base64 at all !!!\n-----END PGP MESSAGE-----\n".to_vec(),
        b"-----BEGIN PGP MESSAGE-----\n".to_vec(),
        vec![0xff; 4096],
        (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80).collect(),
        vec![0x85],
        vec![0x00],
        b"   \n".to_vec(),
        fixture_str("rsa2048.public.asc").into_bytes(),
    ];
    for input in inputs {
        let result = decrypt_all(&key, &input);
        assert!(matches!(result, Err(PgpError::Malformed(_))), "{:?} -> {result:?}", &input[..input.len().min(20)]);
    }
}

/// Every flipped byte and every truncation of a small message must fail (or, for a flip, still yield
/// the exact plaintext): never panic, never return altered or short data as a success.
#[test]
fn every_flip_and_truncation_is_caught() {
    let key = key();
    let plaintext = sample(40_000);
    let ciphertext = encrypt_to(&key, &plaintext);
    assert_eq!(decrypt_all(&key, &ciphertext).unwrap(), plaintext);

    for len in 0..ciphertext.len() {
        match decrypt_all(&key, &ciphertext[..len]) {
            Err(PgpError::Empty) => assert_eq!(len, 0),
            Err(PgpError::Malformed(_) | PgpError::Integrity) => {}
            other => panic!("truncated to {len} of {}: {other:?}", ciphertext.len()),
        }
    }
    for pos in 0..ciphertext.len() {
        for mask in [0x01u8, 0x80] {
            let mut tampered = ciphertext.clone();
            tampered[pos] ^= mask;
            match decrypt_all(&key, &tampered) {
                Err(PgpError::Malformed(_) | PgpError::Integrity | PgpError::WrongKey) => {}
                Ok(out) if out == plaintext => {}
                other => panic!(
                    "byte {pos} of {} ^ {mask:#x}: {:?}",
                    ciphertext.len(),
                    other.map(|out| format!("{} bytes of plaintext", out.len()))
                ),
            }
        }
    }
}

#[test]
fn tampering_in_the_middle_of_a_large_file_is_an_integrity_error() {
    let key = key();
    let plaintext = sample(3 << 20);
    let ciphertext = encrypt_to(&key, &plaintext);
    for pos in [ciphertext.len() / 2, ciphertext.len() - 30, ciphertext.len() - 1] {
        let mut tampered = ciphertext.clone();
        tampered[pos] ^= 0x20;
        let result = decrypt_all(&key, &tampered);
        assert!(matches!(result, Err(PgpError::Integrity)), "flip at {pos}: {:?}", result.map(|v| v.len()));
    }
    let truncated = &ciphertext[..ciphertext.len() / 2];
    assert!(matches!(decrypt_all(&key, truncated), Err(PgpError::Integrity)));
}

/// The MDC is the only thing that protects the last bytes: altering it with the data intact must fail
/// at the end of the stream, after the plaintext has been released.
#[test]
fn altered_mdc_fails_at_the_end_of_the_stream() {
    let key = key();
    let plaintext = sample(200_000);
    let ciphertext = encrypt_to(&key, &plaintext);
    let mut tampered = ciphertext.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x01; // inside the MDC's SHA-1, which sits at the very end

    let mut reader = key.decrypt(&tampered[..]).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let err = loop {
        match reader.read(&mut buf) {
            Ok(0) => panic!("altered MDC accepted"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    assert!(err.to_string().contains("integrity"), "{err}");
    assert!(matches!(PgpError::from_io(err), PgpError::Integrity));
    assert!(plaintext.starts_with(&got));
    // Fused: keeps failing.
    assert!(reader.read(&mut buf).is_err());
}

fn literal_only(plaintext: &[u8]) -> Vec<u8> {
    let mut builder = MessageBuilder::from_bytes("transactions.csv", plaintext.to_vec());
    builder.compression(CompressionAlgorithm::ZIP);
    builder.to_vec(rand::thread_rng()).unwrap()
}

fn signed_only(plaintext: &[u8]) -> Vec<u8> {
    let (signer, _) = SignedSecretKey::from_string(&fixture_str("rsa2048.secret.asc")).unwrap();
    let mut builder = MessageBuilder::from_bytes("transactions.csv", plaintext.to_vec());
    builder.sign(&signer.primary_key, Password::empty(), HashAlgorithm::Sha256);
    builder.to_vec(rand::thread_rng()).unwrap()
}

#[test]
fn not_encrypted() {
    let key = key();
    for message in [literal_only(b"1;2\n"), signed_only(b"1;2\n")] {
        assert!(matches!(decrypt_all(&key, &message), Err(PgpError::NotEncrypted)));
    }
}

#[test]
fn recipient_key_rejects_secret_keys_and_garbage() {
    assert!(matches!(RecipientKey::from_armored("hello"), Err(PgpError::Key(_))));
    assert!(matches!(PlatformKey::from_armored("hello", None), Err(PgpError::Key(_))));
    assert!(matches!(PlatformKey::from_armored(&fixture_str("rsa2048.public.asc"), None), Err(PgpError::Key(_))));
}

#[test]
fn messages_are_actionable() {
    for err in [
        PgpError::Malformed("x".into()),
        PgpError::WrongKey,
        PgpError::NotEncrypted,
        PgpError::Integrity,
        PgpError::Empty,
        PgpError::Key("x".into()),
    ] {
        let text = err.to_string();
        assert!(text.len() > 10, "{text}");
    }
    assert!(PgpError::WrongKey.to_string().contains("public key"));
}

/// Yields `data` in small pieces, an `Interrupted` error between pieces, and fails with a real error
/// after `fail_after` bytes, if set.
struct Flaky<'a> {
    data: &'a [u8],
    fail_after: Option<usize>,
    served: usize,
    interrupt: bool,
}

impl Read for Flaky<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        if self.fail_after.is_some_and(|limit| self.served >= limit) {
            return Err(std::io::Error::other("disk on fire"));
        }
        let n = buf.len().min(1000).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        self.served += n;
        Ok(n)
    }
}

#[test]
fn input_errors_are_io_errors_and_interruptions_are_retried() {
    let key = key();
    let plaintext = sample(300_000);
    let ciphertext = encrypt_to(&key, &plaintext);

    let read_all = |fail_after: Option<usize>| -> Result<Vec<u8>, PgpError> {
        let mut reader = key.decrypt(Flaky { data: &ciphertext, fail_after, served: 0, interrupt: false })?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out).map_err(PgpError::from_io)?;
        Ok(out)
    };
    assert_eq!(read_all(None).unwrap(), plaintext);
    for fail_after in [0, 1000, 5000, ciphertext.len() / 2] {
        match read_all(Some(fail_after)) {
            Err(PgpError::Io(e)) => assert!(e.to_string().contains("disk on fire"), "{e}"),
            other => panic!("failing after {fail_after}: {:?}", other.map(|v| v.len())),
        }
    }
}
