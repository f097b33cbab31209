//! A file as received (uploaded or named on the command line), possibly OpenPGP-encrypted.
//!
//! An encrypted file is decrypted to a spool file **before** any row is ingested: OpenPGP
//! reports integrity failures (MDC mismatch, truncation) only at the end of the stream, and a
//! file that fails them must not leave half of its rows behind. The spool file is deleted when
//! ingestion ends, whatever the outcome.

use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cashback_domain::acquirer::FileName;
use cashback_pgp::{PgpError, PlatformKey};
use cashback_store::{BeginFile, NewAcquirerFile};

use crate::{IngestContext, IngestError, IngestOptions, Ingested, Received, ingest_file};

/// The platform's key, where decrypted spool files go and how large they may grow.
#[derive(Clone)]
pub struct Decryption {
    /// The platform's secret key; without one, encrypted files are refused.
    pub key: Option<Arc<PlatformKey>>,
    /// Directory for decrypted spool files (created if missing).
    pub spool_dir: PathBuf,
    /// Largest decrypted size accepted (compressed OpenPGP data can expand a lot).
    pub max_plaintext_bytes: u64,
}

impl Decryption {
    pub fn new(key: Option<Arc<PlatformKey>>, spool_dir: impl Into<PathBuf>) -> Self {
        Self { key, spool_dir: spool_dir.into(), max_plaintext_bytes: 8 << 30 }
    }
}

/// Ingest the file at `path` named `name` (`….csv` as is, `….csv.pgp` decrypted first).
///
/// File-level refusals (bad name, wrong key, corrupted ciphertext, decompression over the
/// limit) come back as [`IngestError::FileName`] or [`IngestError::Refused`]; a refused file is
/// recorded as FAILED with its reason, so the acquirer's report shows it.
pub async fn ingest_path(
    ctx: &IngestContext,
    name: &str,
    path: &Path,
    received: Received,
    decryption: &Decryption,
    opts: &IngestOptions,
    progress: impl Fn(u64) + Send + Sync + 'static,
) -> Result<Ingested, IngestError> {
    let fname = FileName::parse(name).map_err(IngestError::FileName)?;
    if !fname.encrypted {
        let file = std::fs::File::open(path)?;
        return ingest_file(ctx, name, received, file, opts, progress).await;
    }
    if let Some(done) = already_done(ctx, name).await? {
        return Ok(done);
    }
    let Some(key) = decryption.key.clone() else {
        return refuse(ctx, &fname, name, received, "this platform has no OpenPGP key configured".into()).await;
    };
    let (src, dir, max) = (path.to_owned(), decryption.spool_dir.clone(), decryption.max_plaintext_bytes);
    let decrypted = tokio::task::spawn_blocking(move || decrypt_to_spool(&key, &src, &dir, max))
        .await
        .map_err(|e| IngestError::Io(std::io::Error::other(e.to_string())))?;
    match decrypted {
        Ok(plain) => {
            let file = plain.reopen()?;
            // `plain` lives until ingestion ends; dropping it deletes the spool file.
            let out = ingest_file(ctx, name, received, file, opts, progress).await;
            drop(plain);
            out
        }
        Err(Decrypt::Refused(reason)) => refuse(ctx, &fname, name, received, reason).await,
        Err(Decrypt::Io(e)) => Err(IngestError::Io(e)),
    }
}

enum Decrypt {
    Refused(String),
    Io(std::io::Error),
}

fn decrypt_to_spool(key: &PlatformKey, src: &Path, dir: &Path, max: u64) -> Result<tempfile::NamedTempFile, Decrypt> {
    std::fs::create_dir_all(dir).map_err(Decrypt::Io)?;
    let input = std::fs::File::open(src).map_err(Decrypt::Io)?;
    let mut reader = match key.decrypt(input) {
        Ok(r) => r,
        Err(PgpError::Io(e)) => return Err(Decrypt::Io(e)),
        Err(PgpError::Key(e)) => return Err(Decrypt::Io(std::io::Error::other(format!("platform key: {e}")))),
        Err(e) => return Err(Decrypt::Refused(e.to_string())),
    };
    let spool = tempfile::Builder::new().prefix("decrypted-").suffix(".csv").tempfile_in(dir).map_err(Decrypt::Io)?;
    let mut out = BufWriter::with_capacity(1 << 20, spool.as_file());
    let mut buf = vec![0u8; 1 << 16];
    let mut total: u64 = 0;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(match PgpError::from_io(e) {
                    PgpError::Io(e) => Decrypt::Io(e),
                    other => Decrypt::Refused(other.to_string()),
                });
            }
        };
        total += n as u64;
        if total > max {
            return Err(Decrypt::Refused(format!(
                "the decrypted file is larger than the limit of {max} bytes; split it into smaller files"
            )));
        }
        out.write_all(&buf[..n]).map_err(Decrypt::Io)?;
    }
    out.flush().map_err(Decrypt::Io)?;
    drop(out);
    Ok(spool)
}

async fn already_done(ctx: &IngestContext, name: &str) -> Result<Option<Ingested>, IngestError> {
    Ok(ctx
        .store
        .get_acquirer_file(name)
        .await?
        .filter(|f| f.status == cashback_store::FileStatus::Done)
        .map(|file| Ingested { file, already_done: true }))
}

/// Record a file refused before any row was read. A file whose earlier attempt was cut off
/// mid-way (rows already stored) is left as it is, to be resumed by a good copy.
async fn refuse(
    ctx: &IngestContext,
    fname: &FileName,
    name: &str,
    received: Received,
    reason: String,
) -> Result<Ingested, IngestError> {
    let new =
        NewAcquirerFile { name: name.to_owned(), abi: fname.abi.clone(), size: received.size, sha256: received.sha256 };
    match ctx.store.begin_acquirer_file(new, ctx.now).await? {
        BeginFile::AlreadyDone(file) => return Ok(Ingested { file, already_done: true }),
        BeginFile::Started(f) => {
            ctx.store.finish_acquirer_file(f.id, Some(reason.clone()), ctx.now).await?;
        }
        BeginFile::Resume(_) => {}
    }
    tracing::warn!(file = %name, %reason, "acquirer file refused");
    Err(IngestError::Refused(reason))
}
