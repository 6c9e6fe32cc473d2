//! The bundle archive sent over the serial link by a model update (`DeployBegin` /
//! `DeployChunk` / `DeployCommit`, `docs/protocol.md` section 8). Shared by the host
//! (`tools deploy --serial`, which packs) and the board (`device serve --state`, which
//! unpacks).
//!
//! ```text
//! archive = entry*            (file_count entries, nothing after the last)
//! entry   = name_len: u8 (1..=255) ‖ name: UTF-8 ‖ size: u32 LE ‖ size bytes
//! ```
//!
//! `name` is a plain file name (no `/`, not `.` or `..`, no NUL) and occurs once.
//! Entries are in byte order of their names. The archive holds `manifest.json`,
//! `manifest.sig` when the bundle is signed, and every file the manifest lists. The
//! transfer is named by the sha256 of the whole archive, which the board checks the
//! received bytes against before reading any entry (a re-signed bundle is a new
//! transfer); the signature and the manifest's per-file sha256 sums then authenticate
//! the contents.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::format::{Bundle, MANIFEST_FILE, MODEL_FILE};
use crate::signature::SIGNATURE_FILE;

/// Largest archive accepted (the length is a `u32` on the wire).
pub const MAX_ARCHIVE: u64 = u32::MAX as u64;

/// A packed bundle, ready to send.
#[derive(Debug, Clone)]
pub struct Archive {
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`: names the transfer.
    pub archive_sha256: [u8; 32],
    pub file_count: u16,
    /// Manifest `name`.
    pub name: String,
    /// The manifest's sha256 of its model file (hex), which the board reports as the model
    /// it serves once the update is in place.
    pub model_sha256: Option<String>,
}

/// Packs the bundle directory `dir`: `manifest.json`, `manifest.sig` (if present) and the
/// files the manifest lists. The bytes are not verified here: the board does that.
pub fn pack(dir: &Path) -> Result<Archive, String> {
    let read = Bundle::read(dir).map_err(|e| e.to_string())?;
    let name = read.manifest().name.clone();
    let model_sha256 = read.manifest().files.get(MODEL_FILE).cloned();
    let mut names: Vec<String> = read.manifest().files.keys().cloned().collect();
    names.push(MANIFEST_FILE.to_string());
    if dir.join(SIGNATURE_FILE).is_file() {
        names.push(SIGNATURE_FILE.to_string());
    }
    let mut files = BTreeMap::new();
    for n in names {
        check_name(&n)?;
        let bytes =
            crate::format::read_regular_file(&dir.join(&n), crate::format::max_file_bytes(&n))
                .map_err(|e| format!("{}: {e}", dir.join(&n).display()))?;
        files.insert(n, bytes);
    }
    let mut bytes = Vec::new();
    for (n, b) in &files {
        let size = u32::try_from(b.len()).map_err(|_| format!("{n}: larger than 4 GiB"))?;
        bytes.push(n.len() as u8);
        bytes.extend_from_slice(n.as_bytes());
        bytes.extend_from_slice(&size.to_le_bytes());
        bytes.extend_from_slice(b);
    }
    if bytes.len() as u64 > MAX_ARCHIVE {
        return Err("archive larger than 4 GiB".into());
    }
    let file_count = u16::try_from(files.len()).map_err(|_| "more than 65535 files".to_string())?;
    Ok(Archive {
        archive_sha256: Sha256::digest(&bytes).into(),
        bytes,
        file_count,
        name,
        model_sha256,
    })
}

fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 255 || n == "." || n == ".." || n.contains(['/', '\\', '\0']) {
        return Err(format!("bad file name {n:?} in the bundle archive"));
    }
    Ok(())
}

/// Splits an archive into `(name, bytes)` entries, checking that the bytes have sha256
/// `archive_sha256`, then the format and the file count.
pub fn parse<'a>(
    bytes: &'a [u8],
    file_count: u16,
    archive_sha256: &[u8; 32],
) -> Result<Vec<(&'a str, &'a [u8])>, String> {
    let sha: [u8; 32] = Sha256::digest(bytes).into();
    if &sha != archive_sha256 {
        return Err("archive sha256 differs from the one announced in DeployBegin".into());
    }
    let mut out: Vec<(&str, &[u8])> = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = usize::from(rest[0]);
        if n == 0 || rest.len() < 1 + n + 4 {
            return Err(format!("archive truncated at entry {}", out.len()));
        }
        let name = std::str::from_utf8(&rest[1..1 + n])
            .map_err(|_| format!("archive entry {}: name is not UTF-8", out.len()))?;
        check_name(name)?;
        let size = u32::from_le_bytes(rest[1 + n..5 + n].try_into().unwrap()) as usize;
        let body = &rest[5 + n..];
        if body.len() < size {
            return Err(format!("archive entry {name}: truncated"));
        }
        if out.iter().any(|(m, _)| *m == name) {
            return Err(format!("archive entry {name}: duplicate"));
        }
        out.push((name, &body[..size]));
        rest = &body[size..];
    }
    if out.len() != usize::from(file_count) {
        return Err(format!(
            "archive has {} files, DeployBegin said {file_count}",
            out.len()
        ));
    }
    if !out.iter().any(|(n, _)| *n == MANIFEST_FILE) {
        return Err(format!("archive has no {MANIFEST_FILE}"));
    }
    Ok(out)
}

/// Writes the entries of a parsed archive into the (existing, empty) directory `dir`,
/// each file fsynced. No per-file rename: `dir` is a scratch directory that the install
/// copies from, never what the device loads.
pub fn unpack(entries: &[(&str, &[u8])], dir: &Path) -> Result<(), String> {
    for (name, bytes) in entries {
        let path = dir.join(name);
        crate::atomic::write_synced(&path, bytes)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut v = Vec::new();
        for (n, b) in entries {
            v.push(n.len() as u8);
            v.extend_from_slice(n.as_bytes());
            v.extend_from_slice(&(b.len() as u32).to_le_bytes());
            v.extend_from_slice(b);
        }
        v
    }

    fn sha(bytes: &[u8]) -> [u8; 32] {
        Sha256::digest(bytes).into()
    }

    #[test]
    fn parse_checks_sha_format_and_count() {
        let m = b"{\"name\":\"x\"}";
        let a = archive(&[("a.bin", b"\x00\x01"), (MANIFEST_FILE, m)]);
        let e = parse(&a, 2, &sha(&a)).unwrap();
        assert_eq!(
            e,
            vec![("a.bin", &b"\x00\x01"[..]), (MANIFEST_FILE, &m[..])]
        );
        assert!(parse(&a, 3, &sha(&a)).unwrap_err().contains("2 files"));
        assert!(parse(&a, 2, &sha(m)).unwrap_err().contains("sha256"));
        let cut = &a[..a.len() - 1];
        assert!(parse(cut, 2, &sha(&a)).unwrap_err().contains("sha256"));
        assert!(parse(cut, 2, &sha(cut)).unwrap_err().contains("truncated"));
        let bad = archive(&[("../x", b""), (MANIFEST_FILE, m)]);
        assert!(parse(&bad, 2, &sha(&bad))
            .unwrap_err()
            .contains("bad file name"));
        let dup = archive(&[(MANIFEST_FILE, m), (MANIFEST_FILE, m)]);
        assert!(parse(&dup, 2, &sha(&dup))
            .unwrap_err()
            .contains("duplicate"));
        let none = archive(&[("a.bin", b"")]);
        assert!(parse(&none, 1, &sha(&none))
            .unwrap_err()
            .contains("no manifest.json"));
    }
}
