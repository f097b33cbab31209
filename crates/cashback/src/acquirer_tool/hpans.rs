//! The enrolled hashed-PAN list as an exact membership set: sorted 32-byte SHA-256 digests
//! (32 bytes per card: 20 M cards ≈ 640 MB), binary search, no false positives. The list is read
//! line by line from the zip entry; its text is never held in memory.

use std::io::{self, BufRead, Read};
use std::path::Path;

use anyhow::{Context, bail};

/// Most entries accepted in the zip (the original's zip-bomb limits).
const MAX_ENTRIES: usize = 1000;
/// Largest uncompressed entry: 20 M lines of 64 hex + CRLF, with some slack.
const MAX_ENTRY_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Largest uncompressed/compressed ratio (hex text of random digests compresses about 2:1).
const MAX_RATIO: u64 = 10;

/// An exact set of hpans: the sorted digests, and where each 16-bit prefix starts (so a lookup
/// is a binary search over a few hundred neighbouring digests, not over the whole list).
#[derive(Debug)]
pub struct HpanSet {
    sorted: Vec<[u8; 32]>,
    /// `starts[p]..starts[p + 1]`: the digests whose first two bytes are `p` (65,537 entries).
    starts: Vec<u32>,
}

impl HpanSet {
    /// From digests in any order (duplicates removed).
    pub fn from_digests(mut v: Vec<[u8; 32]>) -> HpanSet {
        v.sort_unstable();
        v.dedup();
        v.shrink_to_fit();
        assert!(v.len() < u32::MAX as usize, "at most 4 G hpans");
        let starts = (0..=1usize << 16).map(|p| v.partition_point(|d| usize::from(prefix(d)) < p) as u32).collect();
        HpanSet { sorted: v, starts }
    }

    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn contains(&self, digest: &[u8; 32]) -> bool {
        let p = usize::from(prefix(digest));
        let (lo, hi) = (self.starts[p] as usize, self.starts[p + 1] as usize);
        self.sorted[lo..hi].binary_search(digest).is_ok()
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

fn prefix(d: &[u8; 32]) -> u16 {
    u16::from_be_bytes([d[0], d[1]])
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
