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
//! transfer is named by sha256(`manifest.json`), which with the signature and the
//! manifest's per-file sha256 sums authenticates everything else: the archive itself
//! carries no checksum.

use std::collections::BTreeMap;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::format::{Bundle, MANIFEST_FILE};
use crate::signature::SIGNATURE_FILE;

/// Largest archive accepted (the length is a `u32` on the wire).
pub const MAX_ARCHIVE: u64 = u32::MAX as u64;

/// A packed bundle, ready to send.
#[derive(Debug, Clone)]
pub struct Archive {
    pub bytes: Vec<u8>,
    /// sha256 of `manifest.json`.
    pub manifest_sha256: [u8; 32],
    pub file_count: u16,
    /// Manifest `name`.
    pub name: String,
}

/// Packs the bundle directory `dir`: `manifest.json`, `manifest.sig` (if present) and the
/// files the manifest lists. The bytes are not verified here: the board does that.
pub fn pack(dir: &Path) -> Result<Archive, String> {
    let read = Bundle::read(dir).map_err(|e| e.to_string())?;
    let name = read.manifest().name.clone();
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
    let manifest_sha256: [u8; 32] = Sha256::digest(&files[MANIFEST_FILE]).into();
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
        bytes,
        manifest_sha256,
        file_count,
        name,
    })
}

fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > 255 || n == "." || n == ".." || n.contains(['/', '\\', '\0']) {
        return Err(format!("bad file name {n:?} in the bundle archive"));
    }
    Ok(())
}

/// Splits an archive into `(name, bytes)` entries, checking the format, the file count
/// and that `manifest.json` has sha256 `manifest_sha256`.
pub fn parse<'a>(
    bytes: &'a [u8],
    file_count: u16,
    manifest_sha256: &[u8; 32],
) -> Result<Vec<(&'a str, &'a [u8])>, String> {
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
    let manifest = out
        .iter()
        .find(|(n, _)| *n == MANIFEST_FILE)
        .ok_or_else(|| format!("archive has no {MANIFEST_FILE}"))?;
    let sha: [u8; 32] = Sha256::digest(manifest.1).into();
    if &sha != manifest_sha256 {
        return Err(format!(
            "{MANIFEST_FILE} sha256 differs from the one announced in DeployBegin"
        ));
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

    #[test]
    fn parse_checks_format_count_and_manifest_sha() {
        let m = b"{\"name\":\"x\"}";
        let sha: [u8; 32] = Sha256::digest(m).into();
        let a = archive(&[("a.bin", b"\x00\x01"), (MANIFEST_FILE, m)]);
        let e = parse(&a, 2, &sha).unwrap();
        assert_eq!(
            e,
            vec![("a.bin", &b"\x00\x01"[..]), (MANIFEST_FILE, &m[..])]
        );
        assert!(parse(&a, 3, &sha).unwrap_err().contains("2 files"));
        assert!(parse(&a, 2, &[0; 32]).unwrap_err().contains("sha256"));
        assert!(parse(&a[..a.len() - 1], 2, &sha)
            .unwrap_err()
            .contains("truncated"));
        let bad = archive(&[("../x", b""), (MANIFEST_FILE, m)]);
        assert!(parse(&bad, 2, &sha).unwrap_err().contains("bad file name"));
        let dup = archive(&[(MANIFEST_FILE, m), (MANIFEST_FILE, m)]);
        assert!(parse(&dup, 2, &sha).unwrap_err().contains("duplicate"));
    }
}
