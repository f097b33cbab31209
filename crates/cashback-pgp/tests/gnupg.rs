//! Files and keys made by GnuPG 2.2 with the BouncyCastle batch tool's settings (test 5 of the brief).
//! The fixtures and the commands that made them are in tests/fixtures (README.md, generate.sh).

mod common;

use std::io::Read;

use cashback_pgp::{PgpError, PlatformKey, RecipientKey};
use common::{decrypt_all, fixture, fixture_path, fixture_str};
use sha2::{Digest, Sha256};

fn rsa_key() -> PlatformKey {
    PlatformKey::from_armored(&fixture_str("rsa2048.secret.asc"), None).unwrap()
}

fn passphrase_key() -> PlatformKey {
    let passphrase = fixture_str("rsa2048-passphrase.passphrase.txt");
    PlatformKey::from_armored(&fixture_str("rsa2048-passphrase.secret.asc"), Some(&passphrase)).unwrap()
}

#[test]
fn decrypts_gnupg_files() {
    let key = rsa_key();
    let expected = fixture("transactions.csv");
    for name in [
        "transactions.csv.cast5-zip.gpg",
        "transactions.csv.aes256-zlib.gpg",
        "transactions.csv.aes256-bzip2.gpg",
        "transactions.csv.aes128-uncompressed.gpg",
        "transactions.csv.asc",
        "transactions.csv.signed-encrypted.gpg",
    ] {
        let plaintext = decrypt_all(&key, &fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plaintext, expected, "{name}");
    }
}

#[test]
fn decrypts_from_a_file_reader() {
    let key = rsa_key();
    let file = std::fs::File::open(fixture_path("transactions.csv.cast5-zip.gpg")).unwrap();
    let mut plaintext = String::new();
    key.decrypt(file).unwrap().read_to_string(&mut plaintext).unwrap();
    assert_eq!(plaintext.as_bytes(), fixture("transactions.csv"));
    assert_eq!(plaintext.lines().next().unwrap().split(';').count(), 19);
}

#[test]
fn decrypts_a_large_gnupg_file_with_partial_body_lengths() {
    let key = rsa_key();
    let expected = fixture_str("large.csv.sha256-and-size.txt");
    let mut lines = expected.lines();
    let (sha, size) = (lines.next().unwrap(), lines.next().unwrap().trim().parse::<u64>().unwrap());

    let file = std::fs::File::open(fixture_path("large.csv.cast5-zip.gpg")).unwrap();
    let mut reader = key.decrypt(file).unwrap();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    assert_eq!(total, size);
    let digest: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, sha);
}

#[test]
fn passphrase_protected_key() {
    let secret = fixture_str("rsa2048-passphrase.secret.asc");
    assert!(matches!(PlatformKey::from_armored(&secret, None), Err(PgpError::Key(_))));
    assert!(matches!(PlatformKey::from_armored(&secret, Some("not the passphrase")), Err(PgpError::Key(_))));

    let key = passphrase_key();
    let plaintext = decrypt_all(&key, &fixture("transactions.csv.to-passphrase-key.gpg")).unwrap();
    assert_eq!(plaintext, fixture("transactions.csv"));
    // The export keeps the protection it was loaded with.
    let exported = key.to_armored();
    assert!(matches!(PlatformKey::from_armored(&exported, None), Err(PgpError::Key(_))));
    let passphrase = fixture_str("rsa2048-passphrase.passphrase.txt");
    assert_eq!(
        PlatformKey::from_armored(&exported, Some(&passphrase)).unwrap().fingerprint_hex(),
        key.fingerprint_hex()
    );
}

#[test]
fn wrong_key_for_gnupg_files() {
    assert!(matches!(
        decrypt_all(&passphrase_key(), &fixture("transactions.csv.cast5-zip.gpg")),
        Err(PgpError::WrongKey)
    ));
    assert!(matches!(
        decrypt_all(&rsa_key(), &fixture("transactions.csv.to-passphrase-key.gpg")),
        Err(PgpError::WrongKey)
    ));
    // Encrypted with a password only: not to our key either.
    assert!(matches!(decrypt_all(&rsa_key(), &fixture("transactions.csv.password-only.gpg")), Err(PgpError::WrongKey)));
}

#[test]
fn unencrypted_gnupg_files() {
    let key = rsa_key();
    for name in ["transactions.csv.signed-only.gpg", "transactions.csv.literal-only.gpg"] {
        assert!(matches!(decrypt_all(&key, &fixture(name)), Err(PgpError::NotEncrypted)), "{name}");
    }
}

#[test]
fn fingerprints_match_gnupg() {
    // `gpg --with-colons --fingerprint`, recorded by generate.sh.
    let listing = fixture_str("fingerprints.txt");
    let mut lines = listing.lines();
    assert_eq!(rsa_key().fingerprint_hex(), lines.next().unwrap());
    assert_eq!(passphrase_key().fingerprint_hex(), lines.next().unwrap());
}

#[test]
fn encrypts_to_a_gnupg_public_key() {
    let recipient = RecipientKey::from_armored(&fixture_str("rsa2048.public.asc")).unwrap();
    let plaintext = fixture("transactions.csv");
    let mut ciphertext = Vec::new();
    recipient.encrypt(&plaintext[..], &mut ciphertext).unwrap();
    assert_eq!(decrypt_all(&rsa_key(), &ciphertext).unwrap(), plaintext);
    // To the primary key of a single-key RSA certificate.
    let single = PlatformKey::from_armored(
        &fixture_str("rsa2048-passphrase.secret.asc"),
        Some(&fixture_str("rsa2048-passphrase.passphrase.txt")),
    )
    .unwrap();
    let recipient = RecipientKey::from_armored(&single.public_key_armored()).unwrap();
    let mut ciphertext = Vec::new();
    recipient.encrypt(&plaintext[..], &mut ciphertext).unwrap();
    assert_eq!(decrypt_all(&single, &ciphertext).unwrap(), plaintext);
}

/// Optional: if gpg is installed, it must decrypt what we encrypt (to the fixture key) and encrypt to a
/// key we generate. Skipped (passes) without gpg; CI need not have it.
#[test]
fn gnupg_interop_when_available() {
    let Ok(status) = std::process::Command::new("gpg").arg("--version").output() else {
        eprintln!("gpg not installed: skipping live interop");
        return;
    };
    if !status.status.success() {
        return;
    }
    let home = std::env::temp_dir().join(format!("cashback-pgp-gnupg-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let gpg = |args: &[&str], stdin: &[u8]| -> Vec<u8> {
        use std::io::Write;
        let mut child = std::process::Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--yes", "--no-tty", "--quiet", "--trust-model", "always"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "gpg {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    };

    // gpg decrypts our output.
    gpg(&["--import"], &fixture("rsa2048.secret.asc"));
    let plaintext = fixture("transactions.csv");
    let recipient = RecipientKey::from_armored(&fixture_str("rsa2048.public.asc")).unwrap();
    let mut ciphertext = Vec::new();
    recipient.encrypt(&plaintext[..], &mut ciphertext).unwrap();
    assert_eq!(gpg(&["--decrypt"], &ciphertext), plaintext);

    // gpg encrypts to a generated platform key, with its default (preferences-driven) settings.
    let platform = PlatformKey::generate("Cashback dev <dev@cashback.invalid>").unwrap();
    gpg(&["--import"], platform.public_key_armored().as_bytes());
    let fingerprint = platform.fingerprint_hex();
    let encrypted = gpg(&["--recipient", &fingerprint, "--encrypt"], &plaintext);
    assert_eq!(decrypt_all(&platform, &encrypted).unwrap(), plaintext);
    let encrypted = gpg(
        &["--recipient", &fingerprint, "--cipher-algo", "CAST5", "--compress-algo", "ZIP", "--encrypt"],
        &plaintext,
    );
    assert_eq!(decrypt_all(&platform, &encrypted).unwrap(), plaintext);

    let _ = std::process::Command::new("gpgconf").env("GNUPGHOME", &home).args(["--kill", "all"]).status();
    let _ = std::fs::remove_dir_all(&home);
}

/// Flips and truncations of GnuPG files (binary CAST5 and armoured) must fail cleanly, never panic and
/// never yield altered data. Every 3rd position, to keep RSA decryptions in a debug build affordable.
#[test]
fn damaged_gnupg_files_fail_cleanly() {
    let key = rsa_key();
    let expected = fixture("transactions.csv");
    for name in ["transactions.csv.cast5-zip.gpg", "transactions.csv.asc"] {
        let original = fixture(name);
        for len in (0..original.len()).step_by(3) {
            match decrypt_all(&key, &original[..len]) {
                // Only the armour's END line cut short: the data itself is complete and verified.
                Ok(out) => assert_eq!(out, expected, "{name} truncated to {len}: altered output accepted"),
                Err(PgpError::Empty) => assert_eq!(len, 0),
                Err(PgpError::Malformed(_) | PgpError::Integrity) => {}
                Err(other) => panic!("{name} truncated to {len}: {other:?}"),
            }
        }
        for pos in (0..original.len()).step_by(3) {
            let mut damaged = original.clone();
            damaged[pos] ^= 0x04;
            match decrypt_all(&key, &damaged) {
                Ok(out) => assert_eq!(out, expected, "{name}: byte {pos} altered the output"),
                Err(PgpError::Malformed(_) | PgpError::Integrity | PgpError::WrongKey | PgpError::NotEncrypted) => {}
                Err(other) => panic!("{name}: byte {pos}: {other:?}"),
            }
        }
    }
}

#[test]
fn unprotected_files_are_refused() {
    // --rfc2440: legacy Symmetrically Encrypted Data packet, no MDC.
    assert!(matches!(decrypt_all(&rsa_key(), &fixture("transactions.csv.no-mdc.gpg")), Err(PgpError::Integrity)));
}
