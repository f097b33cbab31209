//! The enrolled hashed-PAN list as an exact membership set: the sorted 32-byte SHA-256 digests
//! (32 bytes per card: 20 M cards = 640 MB) plus a bucket index on their leading bits (about one
//! digest per bucket, 4 bytes per bucket: 64 MiB for 20 M), so a lookup is one load in the index
//! and one or two neighbouring digests compared in full — exact, no false positives. The list is
//! read line by line from the zip entry; its text is never held in memory.

use std::io::{self, BufRead, Read};
use std::path::Path;

use anyhow::{Context, bail};

/// Most entries accepted in the zip (the original's zip-bomb limits).
const MAX_ENTRIES: usize = 1000;
/// Largest uncompressed entry: 20 M lines of 64 hex + CRLF, with some slack.
const MAX_ENTRY_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Largest uncompressed/compressed ratio (hex text of random digests compresses about 2:1).
const MAX_RATIO: u64 = 10;
/// Most index bits: 2^24 buckets (64 MiB of index), about one digest per bucket at 16 M cards.
const MAX_BITS: u32 = 24;
/// Lookups done together by [`HpanSet::contains_batch`].
pub const BATCH: usize = 128;

/// An exact set of hpans: the sorted digests, and where each bucket (the digests sharing their
/// leading `bits` bits) starts.
#[derive(Debug)]
pub struct HpanSet {
    sorted: Vec<[u8; 32]>,
    /// `starts[b]..starts[b + 1]`: the digests of bucket `b` (2^bits + 1 entries).
    starts: Vec<u32>,
    /// 64 - bits: a digest's bucket is its first 8 bytes (big-endian) shifted right by this.
    shift: u32,
}

/// The first 8 bytes of a digest, big-endian (the order of the sorted digests).
fn lead(d: &[u8; 32]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

impl HpanSet {
    /// From digests in any order (duplicates removed).
    pub fn from_digests(mut v: Vec<[u8; 32]>) -> HpanSet {
        v.sort_unstable_by(|a, b| lead(a).cmp(&lead(b)).then_with(|| a.cmp(b)));
        v.dedup();
        if v.capacity() - v.len() > v.len() / 16 {
            v.shrink_to_fit();
        }
        assert!(v.len() < u32::MAX as usize, "at most 4 G hpans");
        // About one digest per bucket.
        let bits = (usize::BITS - v.len().leading_zeros()).clamp(1, MAX_BITS);
        let shift = 64 - bits;
        let mut starts = vec![0u32; (1 << bits) + 1];
        for d in &v {
            starts[(lead(d) >> shift) as usize + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        HpanSet { sorted: v, starts, shift }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Bytes held (digests and index), for the figures.
    pub fn heap_bytes(&self) -> usize {
        self.sorted.capacity() * 32 + self.starts.capacity() * 4
    }

    fn bucket(&self, digest: &[u8; 32]) -> (usize, usize) {
        let b = (lead(digest) >> self.shift) as usize;
        (self.starts[b] as usize, self.starts[b + 1] as usize)
    }

    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        let (lo, hi) = self.bucket(digest);
        self.sorted[lo..hi].contains(digest)
    }

    /// `found[i] = self.contains(&digests[i])`, for up to [`BATCH`] digests at a time: the index
    /// entries are loaded first, then the first digest of every bucket, each pass with no
    /// dependency between its loads, so their cache misses overlap instead of queueing.
    pub fn contains_batch(&self, digests: &[[u8; 32]], found: &mut [bool]) {
        assert_eq!(digests.len(), found.len());
        let mut spans = [(0usize, 0usize); BATCH];
        for (digests, found) in digests.chunks(BATCH).zip(found.chunks_mut(BATCH)) {
            for (s, d) in spans.iter_mut().zip(digests) {
                *s = self.bucket(d);
            }
            let mut touch = 0u8;
            for &(lo, _) in &spans[..digests.len()] {
                touch ^= self.sorted.get(lo).map_or(0, |d| d[0]);
            }
            std::hint::black_box(touch);
            for (f, d) in found.iter_mut().zip(digests) {
                *f = self.contains(d);
            }
        }
    }

    /// Appends the hpans of a text list (one 64-hex line each, `\n` or `\r\n`, empty lines
    /// ignored) to `into`. A malformed line is an error (with its line number).
    pub fn read_lines<R: Read>(input: R, into: &mut Vec<[u8; 32]>) -> anyhow::Result<()> {
        let mut reader = io::BufReader::with_capacity(1 << 20, input);
        let mut line = Vec::with_capacity(80);
        let mut n = 0u64;
        loop {
            line.clear();
            if (&mut reader).take(128).read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            n += 1;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            if body.is_empty() {
                continue;
            }
            match decode_hex32(body) {
                Some(d) => into.push(d),
                None => bail!("hashed-PAN list line {n}: not 64 hex digits"),
            }
        }
    }

    /// Loads every `*.csv` entry of the zip at `path`, with zip-bomb and zip-slip checks.
    pub fn load_zip(path: &Path, count_hint: Option<u64>) -> anyhow::Result<HpanSet> {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut zip = zip::ZipArchive::new(io::BufReader::new(file)).context("the hashed-PAN list is not a zip")?;
        if zip.len() > MAX_ENTRIES {
            bail!("the hashed-PAN zip has {} entries (at most {MAX_ENTRIES})", zip.len());
        }
        let mut digests = Vec::with_capacity(count_hint.unwrap_or(0).min(50_000_000) as usize);
        let mut csv_entries = 0;
        for i in 0..zip.len() {
            let entry = zip.by_index(i)?;
            let name = entry.name().context("an entry name of the hashed-PAN zip")?.into_owned();
            if entry.is_dir() {
                continue;
            }
            let Some(stem) = name.strip_suffix(".csv") else {
                bail!("unexpected entry {name:?} in the hashed-PAN zip");
            };
            if stem.is_empty() || !stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                bail!("entry name {name:?} in the hashed-PAN zip is not a plain .csv name");
            }
            let size = entry.size();
            if size > MAX_ENTRY_BYTES {
                bail!("entry {name} of the hashed-PAN zip is too large ({size} bytes)");
            }
            if size > 1 << 20 && size / entry.compressed_size().max(1) > MAX_RATIO {
                bail!("entry {name} of the hashed-PAN zip has a compression ratio above {MAX_RATIO}");
            }
            if count_hint.is_none() {
                digests.reserve((size / 65) as usize);
            }
            // Never read more than the declared size.
            HpanSet::read_lines(entry.take(size), &mut digests).with_context(|| format!("entry {name}"))?;
            csv_entries += 1;
        }
        if csv_entries == 0 {
            bail!("the hashed-PAN zip has no .csv entry");
        }
        Ok(HpanSet::from_digests(digests))
    }
}

fn decode_hex32(s: &[u8]) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    fn nib(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nib(pair[0])? << 4) | nib(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn hex(d: &[u8; 32]) -> String {
        d.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn exact_membership() {
        let a = [1u8; 32];
        let b = [2u8; 32];
        let text = format!("{}\r\n\n{}\n{}", hex(&b), hex(&a), hex(&b));
        let mut v = Vec::new();
        HpanSet::read_lines(text.as_bytes(), &mut v).unwrap();
        let set = HpanSet::from_digests(v);
        assert_eq!(set.len(), 2);
        assert!(set.contains(&a) && set.contains(&b));
        let mut c = a;
        c[31] = 0;
        assert!(!set.contains(&c));
        // Neighbours across prefix boundaries, and the extremes.
        let mut all = Vec::new();
        for p in [0u8, 1, 0x7f, 0xff] {
            for q in [0u8, 0xff] {
                let mut d = [p; 32];
                d[1] = q;
                all.push(d);
            }
        }
        let set = HpanSet::from_digests(all.clone());
        for d in &all {
            assert!(set.contains(d));
            let mut near = *d;
            near[31] ^= 1;
            assert!(!set.contains(&near));
        }
        assert!(!HpanSet::from_digests(Vec::new()).contains(&[0u8; 32]));
        let err = HpanSet::read_lines(format!("{}\nxyz\n", hex(&a)).as_bytes(), &mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn batched_lookups_are_exact() {
        use sha2::{Digest, Sha256};
        let digest = |i: u64| -> [u8; 32] { Sha256::digest(i.to_le_bytes()).into() };
        for n in [1u64, 2, 3, 1000, 70_000] {
            let set = HpanSet::from_digests((0..n).map(digest).chain((0..n / 2).map(digest)).collect());
            assert_eq!(set.len() as u64, n);
            let (mut probes, mut expected) = (Vec::new(), Vec::new());
            for i in 0..2 * n {
                probes.push(digest(i));
                expected.push(i < n);
            }
            // Near misses: one bit off in the last, the middle and the leading bytes (same
            // bucket, or a neighbouring one).
            for i in 0..n {
                for (byte, bit) in [(31, 1u8), (16, 0x80), (8, 1), (2, 1), (0, 0x80)] {
                    let mut d = digest(i);
                    d[byte] ^= bit;
                    probes.push(d);
                    expected.push(false);
                }
            }
            probes.extend([[0u8; 32], [0xff; 32]]);
            expected.extend([false, false]);
            let mut found = vec![true; probes.len()];
            set.contains_batch(&probes, &mut found);
            assert_eq!(found, expected, "n = {n}");
            for (p, e) in probes.iter().zip(&expected) {
                assert_eq!(set.contains(p), *e);
            }
        }
        // Bucket boundaries: digests differing only past the index bits share a bucket.
        let mut same = Vec::new();
        for last in 0..=255u8 {
            let mut d = [0x5a; 32];
            d[31] = last;
            same.push(d);
        }
        let set = HpanSet::from_digests(same.iter().step_by(2).copied().collect());
        for (i, d) in same.iter().enumerate() {
            assert_eq!(set.contains(d), i % 2 == 0);
        }
    }

    fn zip_with(entries: &[(&str, &str)]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut z = zip::ZipWriter::new(f.reopen().unwrap());
        for (name, body) in entries {
            z.start_file(*name, zip::write::SimpleFileOptions::default()).unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        f
    }

    #[test]
    fn zip_checks() {
        let a = hex(&[7u8; 32]);
        let ok = zip_with(&[("hashedPans.csv", &format!("{a}\n"))]);
        assert!(HpanSet::load_zip(ok.path(), None).unwrap().contains(&[7u8; 32]));
        for bad in ["../evil.csv", "dir/x.csv", "list.txt"] {
            let z = zip_with(&[(bad, &format!("{a}\n"))]);
            assert!(HpanSet::load_zip(z.path(), None).is_err(), "{bad}");
        }
        let bomb = zip_with(&[("big.csv", &"0".repeat(4 << 20))]);
        let err = HpanSet::load_zip(bomb.path(), None).unwrap_err();
        assert!(err.to_string().contains("ratio"), "{err}");
        let not_zip = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(not_zip.path(), "hello").unwrap();
        assert!(HpanSet::load_zip(not_zip.path(), None).is_err());
    }
}
