//! OpenPGP for acquirer transaction files.
//!
//! Acquirers upload `;`-separated CSV files encrypted with OpenPGP to the platform's public key.
//! The historical Java batch tool (BouncyCastle) writes: one RSA PKESK, SEIPD v1 (MDC) with CAST5,
//! a ZIP compressed packet, binary literal data, no ASCII armour. GnuPG-made files (AES, ZLIB,
//! BZIP2, uncompressed, armoured, signed-and-encrypted, partial body lengths) are read as well.
//!
//! Everything here is streaming: [`PlatformKey::decrypt`] returns a reader whose memory use does
//! not depend on the file size (a 64 KiB input buffer plus rPGP's 8 KiB buffers and the inflate
//! state; a BZIP2 layer needs a few MiB); [`RecipientKey::encrypt`] writes as it reads.
//!
//! Built on rPGP (`pgp` crate), pure Rust.
//!
//! # Integrity of a streamed file
//!
//! Files are up to ~2 GB, so plaintext is released **before** the integrity check (MDC for
//! SEIPD v1, which is what BouncyCastle and GnuPG 2.2 write) can be done: the check needs the
//! whole ciphertext. The reader returned by [`PlatformKey::decrypt`] therefore reports an
//! integrity failure (tampered, corrupted or truncated ciphertext) as an `Err` from `read()`,
//! at the latest from the `read()` that would otherwise have returned end of file (`Ok(0)`).
//! It never returns `Ok(0)` for a message whose check failed. The error is an
//! [`std::io::Error`] of kind `InvalidData` whose inner error is [`PgpError::Integrity`]
//! (see [`PgpError::from_io`]). A consumer must therefore treat everything it read as
//! provisional until it has seen `Ok(0)` (e.g. import inside a transaction, commit at EOF).

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pgp::composed::{
    ArmorOptions, DecryptionOptions, Deserializable, EncryptionCaps, Esk, KeyType, Message, MessageBuilder,
    SecretKeyParamsBuilder, SignedPublicKey, SignedSecretKey, SubkeyParamsBuilder, TheRing,
};
use pgp::crypto::ecc_curve::ECCCurve;
use pgp::crypto::hash::HashAlgorithm;
use pgp::crypto::sym::SymmetricKeyAlgorithm;
use pgp::packet::{PublicKeyEncryptedSessionKey, SignatureType};
use pgp::types::{
    CompressionAlgorithm, DecryptionKey, EskType, KeyDetails, Password, PkeskVersion, Seipdv1ReadMode, Tag, Timestamp,
};

/// Buffer between the caller's input and the OpenPGP parser.
const INPUT_BUFFER: usize = 64 * 1024;
/// Every ASCII-armoured OpenPGP block starts with this (looked for in the first buffer).
const ARMOR_START: &[u8] = b"-----BEGIN PGP ";
/// Deepest compression nesting we unwrap (real files have one level).
const MAX_NESTING: usize = 8;

/// What can go wrong. The `Display` texts are meant to be shown to the acquirer who uploaded the file
/// (except [`PgpError::Key`], which is about the platform's own key).
#[derive(Debug, thiserror::Error)]
pub enum PgpError {
    /// Not OpenPGP data, bad ASCII armour, or an OpenPGP structure that is corrupted or unsupported.
    #[error(
        "the file is not a valid OpenPGP encrypted file ({0}); encrypt it again with OpenPGP to the platform's public key and send it as is (binary or ASCII-armoured)"
    )]
    Malformed(String),
    /// Encrypted, but not to a key the platform holds (an old or another public key, or a password).
    #[error(
        "the file is not encrypted to the platform's current public key; download the public key again (GET /rtd/csv-transaction/publickey) and encrypt the file to it"
    )]
    WrongKey,
    /// Valid OpenPGP but not encrypted: signed-only, compressed-only or plain literal data.
    #[error(
        "the file is OpenPGP but not encrypted (signed-only or plain data); encrypt it to the platform's public key"
    )]
    NotEncrypted,
    /// The integrity check (MDC or AEAD) failed, the ciphertext is truncated or altered after encryption,
    /// or it was encrypted without integrity protection.
    #[error(
        "the file failed the OpenPGP integrity check: it is truncated or corrupted, or was encrypted without integrity protection (MDC); upload it again, encrypted with integrity protection"
    )]
    Integrity,
    /// No data at all.
    #[error("the file is empty")]
    Empty,
    /// Bad platform key material or passphrase (not the uploader's fault).
    #[error("platform OpenPGP key error: {0}")]
    Key(String),
    /// Reading the input or writing the output failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl PgpError {
    /// Recovers the [`PgpError`] carried by an [`io::Error`] returned from the decrypted reader's `read()`.
    ///
    /// Errors of the underlying input itself (disk, network) come back as [`PgpError::Io`].
    pub fn from_io(err: io::Error) -> PgpError {
        if err.get_ref().is_some_and(|inner| inner.is::<PgpError>()) {
            match err.into_inner().map(|inner| inner.downcast::<PgpError>()) {
                Some(Ok(pgp)) => *pgp,
                // Unreachable given the check above; keep a sensible value anyway.
                _ => PgpError::Integrity,
            }
        } else {
            PgpError::Io(err)
        }
    }

    fn into_io(self) -> io::Error {
        match self {
            PgpError::Io(err) => err,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// The platform's secret key, used to decrypt uploaded files.
pub struct PlatformKey {
    /// As loaded or generated (still passphrase-protected if it was): what [`Self::to_armored`] writes.
    stored: SignedSecretKey,
    /// The same key with the protection of every component we could unlock removed, used to decrypt.
    unlocked: SignedSecretKey,
}

impl fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformKey").field("fingerprint", &self.fingerprint_hex()).finish_non_exhaustive()
    }
}

impl PlatformKey {
    /// Generates a new v4 key: an Ed25519 primary (certify, sign) and a Curve25519 ECDH encryption
    /// subkey, not passphrase-protected. It advertises AES-256/192/128, SHA-256/512 and ZLIB/ZIP/BZIP2,
    /// which GnuPG 2.2+, BouncyCastle and rPGP all honour. Milliseconds, even in a debug build.
    pub fn generate(user_id: &str) -> Result<PlatformKey, PgpError> {
        let mut rng = rand::thread_rng();
        let subkey = SubkeyParamsBuilder::default()
            .key_type(KeyType::ECDH(ECCCurve::Curve25519Legacy))
            .can_encrypt(EncryptionCaps::All)
            .build()
            .map_err(|e| PgpError::Key(format!("subkey parameters: {e}")))?;
        let params = SecretKeyParamsBuilder::default()
            .key_type(KeyType::Ed25519Legacy)
            .can_certify(true)
            .can_sign(true)
            .primary_user_id(user_id.to_owned())
            .preferred_symmetric_algorithms(
                vec![SymmetricKeyAlgorithm::AES256, SymmetricKeyAlgorithm::AES192, SymmetricKeyAlgorithm::AES128]
                    .into(),
            )
            .preferred_hash_algorithms(vec![HashAlgorithm::Sha256, HashAlgorithm::Sha512].into())
            .preferred_compression_algorithms(
                vec![CompressionAlgorithm::ZLIB, CompressionAlgorithm::ZIP, CompressionAlgorithm::BZip2].into(),
            )
            .subkey(subkey)
            .build()
            .map_err(|e| PgpError::Key(format!("key parameters: {e}")))?;
        let key = params.generate(&mut rng).map_err(|e| PgpError::Key(format!("key generation failed: {e}")))?;
        Ok(PlatformKey { unlocked: key.clone(), stored: key })
    }

    /// Loads an ASCII-armoured transferable secret key (RSA or ECC, v4 or v6), e.g. from
    /// `gpg --export-secret-keys --armor`. If the armour holds several keys, the first is used.
    ///
    /// If the key's secret material is passphrase-protected, `passphrase` must unlock it (it is
    /// checked here, once); an unprotected key ignores `passphrase`. At least one component able
    /// to decrypt (primary or subkey) must be present and unlocked, or this fails with
    /// [`PgpError::Key`].
    pub fn from_armored(secret_key_asc: &str, passphrase: Option<&str>) -> Result<PlatformKey, PgpError> {
        let (stored, _headers) = SignedSecretKey::from_string(secret_key_asc)
            .map_err(|e| PgpError::Key(format!("not an ASCII-armoured OpenPGP secret key: {e}")))?;
        let password = passphrase.map(Password::from).unwrap_or_else(Password::empty);

        // Unlock every component in memory (a no-op for unprotected ones). Components that cannot
        // decrypt (e.g. a signing primary, or a GnuPG stub) may stay locked.
        let mut unlocked = stored.clone();
        let mut outcomes =
            vec![(unlocked.primary_key.algorithm().can_encrypt(), unlocked.primary_key.remove_password(&password))];
        for sub in &mut unlocked.secret_subkeys {
            outcomes.push((sub.key.algorithm().can_encrypt(), sub.key.remove_password(&password)));
        }
        let decryptors: Vec<_> = outcomes.into_iter().filter(|(can_decrypt, _)| *can_decrypt).map(|(_, r)| r).collect();
        if decryptors.is_empty() {
            return Err(PgpError::Key("the secret key has no encryption-capable (sub)key".into()));
        }
        if !decryptors.iter().any(Result::is_ok) {
            let why = match (passphrase, decryptors.into_iter().find_map(Result::err)) {
                (None, _) => "the secret key is passphrase-protected but no passphrase was given".to_owned(),
                (Some(_), Some(e)) => format!("wrong passphrase for the secret key ({e})"),
                (Some(_), None) => "wrong passphrase for the secret key".to_owned(),
            };
            return Err(PgpError::Key(why));
        }
        Ok(PlatformKey { stored, unlocked })
    }

    /// The secret key, ASCII-armoured, with the protection it was loaded with (a generated key has none).
    pub fn to_armored(&self) -> String {
        self.stored
            .to_armored_string(ArmorOptions::default())
            .expect("serialising a parsed or generated secret key to memory cannot fail")
    }

    /// The public key (transferable public key, with self-signatures), ASCII-armoured.
    pub fn public_key_armored(&self) -> String {
        self.stored
            .to_public_key()
            .to_armored_string(ArmorOptions::default())
            .expect("serialising a parsed or generated public key to memory cannot fail")
    }

    /// The primary key's fingerprint, upper-case hex without spaces (as `gpg --with-colons` prints it):
    /// 40 digits for a v4 key, 64 for a v6 key.
    pub fn fingerprint_hex(&self) -> String {
        format!("{:X}", self.stored.primary_key.fingerprint())
    }

    /// Streaming decryption of one uploaded file, binary or ASCII-armoured.
    ///
    /// Returns a reader of the plaintext (decompressed; the literal data's bytes as sent, no
    /// line-ending conversion). A signature inside the encryption (sign-and-encrypt) is skipped, not
    /// checked.
    ///
    /// This call reads the first packets (session key, start of the encrypted data) and fails with
    /// [`PgpError::Empty`], [`PgpError::Malformed`], [`PgpError::NotEncrypted`],
    /// [`PgpError::WrongKey`], [`PgpError::Integrity`] (no integrity protection, or corruption seen
    /// already) or [`PgpError::Io`].
    ///
    /// **Integrity failures are reported by the returned reader**: see the crate documentation.
    /// `read()` fails with an `io::Error` (kind `InvalidData`) wrapping [`PgpError::Integrity`]
    /// (MDC/AEAD mismatch, truncation, or plaintext structure broken by tampering), at the latest
    /// instead of the final `Ok(0)`; [`PgpError::from_io`] recovers it. Errors of `input` itself
    /// come back unchanged (so `from_io` gives [`PgpError::Io`]). After an error the reader keeps
    /// returning errors; after `Ok(0)` it keeps returning `Ok(0)`.
    ///
    /// Deviation from the plain `R: Read + 'a` signature: rPGP requires its input to be `Send`, so
    /// `R: Send`; in exchange the returned reader is `Send` (usable from `spawn_blocking`).
    pub fn decrypt<'a, R: Read + Send + 'a>(&'a self, input: R) -> Result<Box<dyn Read + Send + 'a>, PgpError> {
        let failed = Arc::new(AtomicBool::new(false));
        let mut source = Source { inner: BufReader::with_capacity(INPUT_BUFFER, input), failed: failed.clone() };

        let first = match source.fill_buf() {
            Ok(buf) => buf,
            Err(e) => return Err(PgpError::Io(e)),
        };
        let Some(&first_byte) = first.first() else {
            return Err(PgpError::Empty);
        };
        // Same rule as rPGP and GnuPG: a binary packet header has the high bit set.
        let binary = first_byte & 0x80 != 0;
        // Only to word the error: no armour header at the start suggests an unencrypted text file.
        let looks_like_plain_text = !binary && !first.windows(ARMOR_START.len()).any(|w| w == ARMOR_START);
        let parsed = if binary {
            Message::from_bytes(source)
        } else {
            Message::from_armor(source).map(|(message, _headers)| message)
        };
        let message = parsed.map_err(|e| match classify_outer(e, &failed) {
            PgpError::Malformed(why) if looks_like_plain_text => PgpError::Malformed(format!(
                "no OpenPGP data found, the file looks like plain text: was it encrypted? ({why})"
            )),
            other => other,
        })?;

        let (esk, edata_tag) = match &message {
            Message::Encrypted { esk, edata, .. } => (esk, edata.tag()),
            _ => return Err(PgpError::NotEncrypted),
        };
        if edata_tag == Tag::SymEncryptedData {
            // Legacy "Symmetrically Encrypted Data" (no MDC): malleable, refused.
            return Err(PgpError::Integrity);
        }
        let session_key = self.session_key(esk)?;

        let ring = TheRing {
            session_keys: vec![session_key],
            decrypt_options: DecryptionOptions::new()
                // Releases plaintext before the MDC check: see the crate docs (the check still happens at EOF).
                .set_seipdv1_read_mode(Seipdv1ReadMode::Streaming)
                // GnuPG 2.3+ writes its OCB packet to keys that advertise it (ours do not; harmless).
                .enable_gnupg_aead(),
            ..TheRing::default()
        };
        let (mut message, _) = message.decrypt_the_ring(ring, true).map_err(|e| classify_inner(e, &failed))?;

        for _ in 0..MAX_NESTING {
            if !message.is_compressed() && !message.is_signed() {
                break;
            }
            let was_compressed = message.is_compressed();
            message = message.decompress().map_err(|e| classify_inner(e, &failed))?;
            if !was_compressed {
                // A signed message: its inner layer is decompressed by that one call.
                break;
            }
        }
        if message.is_compressed() {
            return Err(PgpError::Malformed("compression nested too deeply".into()));
        }
        if message.is_encrypted() {
            return Err(PgpError::Malformed("nested encryption is not supported".into()));
        }

        Ok(Box::new(Plaintext { message, failed, state: State::Reading }))
    }

    /// Finds and decrypts the session key addressed to one of our (sub)keys.
    fn session_key(&self, esk: &[Esk]) -> Result<pgp::composed::PlainSessionKey, PgpError> {
        let key = &self.unlocked;
        let none = Password::empty();
        let mut addressed_to_us: Option<String> = None;

        for pkesk in esk.iter().filter_map(|esk| match esk {
            Esk::PublicKeyEncryptedSessionKey(pkesk) => Some(pkesk),
            Esk::SymKeyEncryptedSessionKey(_) => None,
        }) {
            let typ = match pkesk.version() {
                PkeskVersion::V3 => EskType::V3_4,
                PkeskVersion::V6 => EskType::V6,
                PkeskVersion::Other(_) => continue,
            };
            let Ok(values) = pkesk.values() else { continue };
            let wildcard = is_wildcard(pkesk);

            let mut attempt = |candidate: &dyn DecryptionKey| -> Option<pgp::composed::PlainSessionKey> {
                match candidate.decrypt(&none, values, typ) {
                    Ok(Ok(session_key)) => Some(session_key),
                    Ok(Err(e)) | Err(e) => {
                        if !wildcard {
                            addressed_to_us = Some(format!("{:X}: {e}", candidate.fingerprint()));
                        }
                        None
                    }
                }
            };

            if key.primary_key.algorithm().can_encrypt()
                && pkesk.match_identity(&key.primary_key)
                && let Some(session_key) = attempt(&key.primary_key)
            {
                return Ok(session_key);
            }
            for sub in &key.secret_subkeys {
                if sub.key.algorithm().can_encrypt()
                    && pkesk.match_identity(&sub.key)
                    && let Some(session_key) = attempt(&sub.key)
                {
                    return Ok(session_key);
                }
            }
        }

        match addressed_to_us {
            // Addressed to our key, which could not open it: the PKESK is damaged.
            Some(detail) => Err(PgpError::Malformed(format!(
                "the session key addressed to the platform key cannot be decrypted, the file is corrupted ({detail})"
            ))),
            None => Err(PgpError::WrongKey),
        }
    }
}

fn is_wildcard(pkesk: &PublicKeyEncryptedSessionKey) -> bool {
    match pkesk.version() {
        PkeskVersion::V3 => pkesk.id().is_ok_and(|id| id.is_wildcard()),
        PkeskVersion::V6 => matches!(pkesk.fingerprint(), Ok(None)),
        PkeskVersion::Other(_) => false,
    }
}

/// An error while parsing the outer (unencrypted) packets.
fn classify_outer(err: pgp::errors::Error, failed: &AtomicBool) -> PgpError {
    if failed.load(Ordering::Relaxed) {
        return input_error(err);
    }
    PgpError::Malformed(err.to_string())
}

/// An error after the session key was found: in what was decrypted.
fn classify_inner(err: pgp::errors::Error, failed: &AtomicBool) -> PgpError {
    if failed.load(Ordering::Relaxed) {
        return input_error(err);
    }
    match err {
        pgp::errors::Error::Unsupported { message, .. } | pgp::errors::Error::Unimplemented { message, .. } => {
            PgpError::Malformed(format!("unsupported: {message}"))
        }
        other => {
            tracing::debug!(error = %other, "OpenPGP decryption failed after the session key was found");
            PgpError::Integrity
        }
    }
}

/// The input itself failed (not the uploader's fault): its error, as far as rPGP kept it.
fn input_error(err: pgp::errors::Error) -> PgpError {
    match err {
        pgp::errors::Error::IO { source, .. } => PgpError::Io(source),
        other => PgpError::Io(io::Error::other(other.to_string())),
    }
}

/// The caller's input, buffered; remembers whether *it* (not the parser) failed.
struct Source<R> {
    inner: BufReader<R>,
    failed: Arc<AtomicBool>,
}

impl<R> fmt::Debug for Source<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Source").finish_non_exhaustive()
    }
}

impl<R: Read> Source<R> {
    fn note<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
        result
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return self.note(other),
            }
        }
    }
}

impl<R: Read> BufRead for Source<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        // Retry interruptions here: rPGP's readers must never see a retryable error. (Only refill an
        // empty buffer, and only once per success: at EOF a second `fill_buf` would read again.)
        if self.inner.buffer().is_empty() {
            loop {
                match self.inner.fill_buf() {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
            }
        }
        Ok(self.inner.buffer())
    }

    fn consume(&mut self, amt: usize) {
        self.inner.consume(amt);
    }
}

enum State {
    Reading,
    Done,
    Failed(io::ErrorKind),
}

/// The decrypted plaintext. Fused: after `Ok(0)` or an error it never calls into rPGP again
/// (rPGP's readers may panic when used after an error).
struct Plaintext<'a> {
    message: Message<'a>,
    failed: Arc<AtomicBool>,
    state: State,
}

impl Read for Plaintext<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.state {
            State::Reading => {}
            State::Done => return Ok(0),
            State::Failed(kind) => {
                return Err(io::Error::new(kind, "the OpenPGP reader already failed"));
            }
        }
        // rPGP treats a 0-byte read as end of message and runs its end-of-message checks.
        if buf.is_empty() {
            return Ok(0);
        }
        match self.message.read(buf) {
            Ok(0) => {
                self.state = State::Done;
                Ok(0)
            }
            Ok(n) => Ok(n),
            Err(e) => {
                let err = if self.failed.load(Ordering::Relaxed) {
                    e
                } else {
                    tracing::debug!(error = %e, "OpenPGP stream failed while reading plaintext");
                    PgpError::Integrity.into_io()
                };
                self.state = State::Failed(err.kind());
                Err(err)
            }
        }
    }
}

/// A public key to encrypt to.
#[derive(Clone)]
pub struct RecipientKey {
    key: SignedPublicKey,
    /// Index into `key.public_subkeys` of the encryption subkey, `None` for the primary key.
    subkey: Option<usize>,
}

impl fmt::Debug for RecipientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecipientKey").field("fingerprint", &self.fingerprint_hex()).finish_non_exhaustive()
    }
}

impl RecipientKey {
    /// Loads an ASCII-armoured transferable public key (e.g. `gpg --export --armor`, or
    /// [`PlatformKey::public_key_armored`]). Picks the newest valid (not revoked, not expired)
    /// encryption subkey, else the primary key if it can encrypt.
    pub fn from_armored(public_key_asc: &str) -> Result<RecipientKey, PgpError> {
        let (key, _headers) = SignedPublicKey::from_string(public_key_asc)
            .map_err(|e| PgpError::Key(format!("not an ASCII-armoured OpenPGP public key: {e}")))?;
        let now = Timestamp::now().as_secs();

        let mut best: Option<(usize, u32)> = None;
        for (index, sub) in key.public_subkeys.iter().enumerate() {
            if !sub.key.algorithm().can_encrypt() {
                continue;
            }
            if sub.signatures.iter().any(|sig| sig.typ() == Some(SignatureType::SubkeyRevocation)) {
                continue;
            }
            let Some(binding) = sub
                .signatures
                .iter()
                .filter(|sig| sig.typ() == Some(SignatureType::SubkeyBinding))
                .max_by_key(|sig| sig.created().map(Timestamp::as_secs))
            else {
                continue;
            };
            let flags = binding.key_flags();
            if !(flags.encrypt_comms() || flags.encrypt_storage()) {
                continue;
            }
            let created = sub.key.created_at().as_secs();
            if let Some(validity) = binding.key_expiration_time()
                && validity.as_secs() > 0
                && u64::from(created) + u64::from(validity.as_secs()) <= u64::from(now)
            {
                continue;
            }
            if best.is_none_or(|(_, best_created)| created >= best_created) {
                best = Some((index, created));
            }
        }

        let subkey = match best {
            Some((index, _)) => Some(index),
            None if key.primary_key.algorithm().can_encrypt() => None,
            None => return Err(PgpError::Key("the public key has no valid encryption (sub)key".into())),
        };
        Ok(RecipientKey { key, subkey })
    }

    /// The primary key's fingerprint, upper-case hex (see [`PlatformKey::fingerprint_hex`]).
    pub fn fingerprint_hex(&self) -> String {
        format!("{:X}", self.key.primary_key.fingerprint())
    }

    /// Streaming encryption to this key: binary OpenPGP (no armour), one PKESK, SEIPD v1 (MDC) with
    /// AES-256, ZIP (deflate) compression, binary literal data with an empty file name, partial body
    /// lengths (512 KiB chunks). Reads `input` to its end; memory use does not depend on its size.
    pub fn encrypt<R: Read, W: Write>(&self, input: R, output: W) -> Result<(), PgpError> {
        let mut rng = rand::thread_rng();
        let mut builder = MessageBuilder::from_reader("", input).seipd_v1(&mut rng, SymmetricKeyAlgorithm::AES256);
        builder.compression(CompressionAlgorithm::ZIP);
        match self.subkey {
            Some(index) => builder.encrypt_to_key(&mut rng, &self.key.public_subkeys[index].key),
            None => builder.encrypt_to_key(&mut rng, &self.key.primary_key),
        }
        .map_err(|e| PgpError::Key(format!("cannot encrypt to this key: {e}")))?;
        builder.to_writer(&mut rng, output).map_err(|e| match e {
            pgp::errors::Error::IO { source, .. } => PgpError::Io(source),
            other => PgpError::Io(io::Error::other(other.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_round_trip() {
        let err = PgpError::Integrity.into_io();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(matches!(PgpError::from_io(err), PgpError::Integrity));

        let err = PgpError::from_io(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert!(matches!(err, PgpError::Io(ref e) if e.kind() == io::ErrorKind::ConnectionReset));
        assert!(matches!(PgpError::from_io(PgpError::Io(io::ErrorKind::NotFound.into()).into_io()), PgpError::Io(_)));
    }

    #[test]
    fn keys_are_shareable_and_the_reader_is_send() {
        fn is_send<T: Send>() {}
        fn is_send_sync<T: Send + Sync>() {}
        is_send_sync::<PlatformKey>();
        is_send_sync::<RecipientKey>();
        is_send_sync::<PgpError>();
        is_send::<Plaintext<'static>>();
    }
}
