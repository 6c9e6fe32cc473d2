//! Bundle signatures: ed25519 keys, `manifest.sig`, and the trust policy a device applies.
//!
//! The manifest lists the sha256 of every other bundle file, so a signature over the
//! manifest covers the whole bundle. The signature is **detached** and over the **exact
//! bytes** of `manifest.json`, so nothing is re-serialised between signing and checking:
//!
//! ```text
//! message   = "edge-classifier manifest.json v1\n" ++ bytes of manifest.json
//! signature = Ed25519(secret key, message)          (RFC 8032, checked with verify_strict)
//! ```
//!
//! The context prefix keeps a bundle key from being usable as a signature on anything
//! else. Files, all UTF-8 text, `#` lines and blank lines ignored:
//!
//! ```text
//! NAME.key (mode 0600)                       NAME.pub
//! edge-classifier ed25519 secret key v1      edge-classifier ed25519 public key v1
//! <64 hex: the 32-byte seed>                 <64 hex: the 32-byte public key>
//!
//! BUNDLE/manifest.sig (next to manifest.json, not listed in it)
//! edge-classifier manifest signature v1
//! key-id: <16 hex>                           first 8 bytes of sha256(public key)
//! ed25519: <128 hex>                         the 64-byte signature
//! ```
//!
//! Checking is a step between [`Bundle::read`] and [`ReadBundle::verify`]:
//! [`check_bundle`] (or [`open_verified`], which does read → signature → verify) with a
//! [`TrustPolicy`]: [`TrustPolicy::Require`] a signature by one of a set of
//! [`TrustedKeys`], or — explicitly, for development — [`TrustPolicy::AllowUnsigned`].

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::BundleError;
use crate::format::{Bundle, Manifest, ReadBundle, VerifiedBundle, MANIFEST_FILE};

/// The detached signature file, next to `manifest.json`.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// Prefix of the signed message (domain separation), followed by the manifest bytes.
pub const SIGNING_CONTEXT: &[u8] = b"edge-classifier manifest.json v1\n";
/// First line of a secret key file.
pub const SECRET_KEY_HEADER: &str = "edge-classifier ed25519 secret key v1";
/// First line of a public key file.
pub const PUBLIC_KEY_HEADER: &str = "edge-classifier ed25519 public key v1";
/// First line of `manifest.sig`.
pub const SIGNATURE_HEADER: &str = "edge-classifier manifest signature v1";
/// The line printed on stderr at every start in unsigned development mode.
pub const ALLOW_UNSIGNED_WARNING: &str = "WARNING: --allow-unsigned: bundle signatures are NOT checked; \
     any bundle with matching sha256 sums is accepted (development mode, never on a deployed board)";

/// Everything that can go wrong with keys and signatures; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    /// A key file is missing, unreadable, malformed or has the wrong length or mode.
    #[error("key file {}: {problem}", .path.display())]
    KeyFile { path: PathBuf, problem: String },

    /// The bundle has no `manifest.sig` but the policy requires one.
    #[error(
        "bundle {}: {SIGNATURE_FILE} missing (the bundle is unsigned; sign it with \
         `tools export --sign KEY` or `tools sign`)",
        .dir.display()
    )]
    Missing { dir: PathBuf },

    /// `manifest.sig` exists but cannot be parsed.
    #[error("bundle {}: {SIGNATURE_FILE}: {problem}", .dir.display())]
    Malformed { dir: PathBuf, problem: String },

    /// The signing key is not one of the trusted keys.
    #[error("bundle {}: signature by key {key_id} is not trusted (trusted keys: {trusted})", .dir.display())]
    Untrusted {
        dir: PathBuf,
        key_id: KeyId,
        trusted: String,
    },

    /// The signature does not match `manifest.json` (tampered manifest or signature).
    #[error(
        "bundle {}: signature does not verify (key {key_id}): manifest.json is not what was signed",
        .dir.display()
    )]
    BadSignature { dir: PathBuf, key_id: KeyId },

    /// `manifest.json` changed on disk between the signature check and parsing.
    #[error("bundle {}: manifest.json changed while it was being checked", .dir.display())]
    Changed { dir: PathBuf },

    /// Reading or writing a bundle file failed.
    #[error("bundle {}: file {file}: {cause}", .dir.display())]
    Io {
        dir: PathBuf,
        file: String,
        cause: io::Error,
    },

    /// The bundle itself is unreadable or fails its sha256 checks.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

type Result<T, E = SignatureError> = std::result::Result<T, E>;

/// Short key identifier: the first 8 bytes of sha256(public key), shown as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl KeyId {
    fn of(public: &VerifyingKey) -> KeyId {
        let digest = Sha256::digest(public.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest[..8]);
        KeyId(id)
    }
}

/// An ed25519 public key, as read from `NAME.pub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

impl PublicKey {
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.key)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Reads a public key file.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = read_key_text(path)?;
        Self::parse(&text, path)
    }

    /// Parses the text of a public key file; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<PublicKey> {
        let bytes = parse_key_text(text, path, PUBLIC_KEY_HEADER, SECRET_KEY_HEADER)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| SignatureError::KeyFile {
            path: path.to_path_buf(),
            problem: "not a valid ed25519 public key (not a curve point)".into(),
        })?;
        if key.is_weak() {
            return Err(SignatureError::KeyFile {
                path: path.to_path_buf(),
                problem: "weak (small-order) ed25519 public key refused".into(),
            });
        }
        Ok(PublicKey { key })
    }

    /// The file text: header line, a comment with the key id, the hex key.
    pub fn to_file_text(&self) -> String {
        format!(
            "{PUBLIC_KEY_HEADER}\n# key id {}\n{}\n",
            self.id(),
            hex::encode(self.key.as_bytes())
        )
    }

    /// Checks `signature` over the exact manifest bytes.
    fn verify(&self, manifest_bytes: &[u8], signature: &Signature) -> bool {
        self.key
            .verify_strict(&signed_message(manifest_bytes), signature)
            .is_ok()
    }
}

/// An ed25519 secret key, as read from `NAME.key`.
pub struct SecretKey {
    key: SigningKey,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(id {})", self.public().id())
    }
}

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> io::Result<SecretKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| io::Error::other(format!("random source: {e}")))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key with this 32-byte seed (RFC 8032 secret key).
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey {
            key: SigningKey::from_bytes(seed),
        }
    }

    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Reads a secret key file. On Unix the file must not be readable by group or others
    /// (like ssh, a key others could read is refused).
    pub fn load(path: &Path) -> Result<SecretKey> {
        let text = read_key_text(path)?;
        let key = Self::parse(&text, path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(SignatureError::KeyFile {
                        path: path.to_path_buf(),
                        problem: format!(
                            "permissions {mode:04o} are too open for a secret key \
                             (run: chmod 600 {})",
                            path.display()
                        ),
                    });
                }
            }
        }
        Ok(key)
    }

    /// Parses the text of a secret key file; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<SecretKey> {
        let seed = parse_key_text(text, path, SECRET_KEY_HEADER, PUBLIC_KEY_HEADER)?;
        Ok(Self::from_seed(&seed))
    }

    /// The file text: header line, a comment with the key id, the hex seed.
    pub fn to_file_text(&self) -> String {
        format!(
            "{SECRET_KEY_HEADER}\n# key id {} (keep this file secret)\n{}\n",
            self.public().id(),
            hex::encode(self.key.to_bytes())
        )
    }

    /// Signs the exact bytes of a `manifest.json`.
    pub fn sign_manifest(&self, manifest_bytes: &[u8]) -> ManifestSignature {
        ManifestSignature {
            key_id: self.public().id(),
            signature: self.key.sign(&signed_message(manifest_bytes)).to_bytes(),
        }
    }
}

/// Writes a new key pair to `NAME.key` (mode 0600) and `NAME.pub`; refuses to overwrite
/// either. Returns both paths and the key id.
pub fn write_key_pair(name: &Path) -> Result<(PathBuf, PathBuf, KeyId)> {
    let with_ext = |ext: &str| {
        let mut s = name.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    let (secret_path, public_path) = (with_ext(".key"), with_ext(".pub"));
    for p in [&secret_path, &public_path] {
        if fs::symlink_metadata(p).is_ok() {
            return Err(SignatureError::KeyFile {
                path: p.clone(),
                problem: "already exists; refusing to overwrite a key (move it away first)".into(),
            });
        }
    }
    let key = SecretKey::generate().map_err(|e| SignatureError::KeyFile {
        path: secret_path.clone(),
        problem: e.to_string(),
    })?;
    let key_err = |path: &Path, e: io::Error| SignatureError::KeyFile {
        path: path.to_path_buf(),
        problem: if e.kind() == io::ErrorKind::AlreadyExists {
            "already exists; refusing to overwrite a key (move it away first)".into()
        } else {
            format!("cannot write: {e}")
        },
    };
    write_new_file(&secret_path, key.to_file_text().as_bytes(), 0o600)
        .map_err(|e| key_err(&secret_path, e))?;
    if let Err(e) = write_new_file(&public_path, key.public().to_file_text().as_bytes(), 0o644) {
        // Never leave half a pair behind.
        let _ = fs::remove_file(&secret_path);
        return Err(key_err(&public_path, e));
    }
    Ok((secret_path, public_path, key.public().id()))
}

/// `create_new` (fails if the file exists) with `mode`, written and fsynced. Not
/// [`crate::atomic`]: a key is never replaced, and the mode must hold from creation on.
fn write_new_file(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_key_text(path: &Path) -> Result<String> {
    let bytes = fs::read(path).map_err(|e| SignatureError::KeyFile {
        path: path.to_path_buf(),
        problem: if e.kind() == io::ErrorKind::NotFound {
            "not found".into()
        } else {
            format!("cannot read: {e}")
        },
    })?;
    String::from_utf8(bytes).map_err(|_| SignatureError::KeyFile {
        path: path.to_path_buf(),
        problem: "malformed: not UTF-8 text (expected a key file written by `tools keygen`)".into(),
    })
}

/// Header line then one line of 64 hex digits; `#` and blank lines ignored.
fn parse_key_text(text: &str, path: &Path, header: &str, other: &str) -> Result<[u8; 32]> {
    let err = |problem: String| SignatureError::KeyFile {
        path: path.to_path_buf(),
        problem,
    };
    let mut lines = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'));
    match lines.next() {
        Some(h) if h == header => {}
        Some(h) if h == other => {
            return Err(err(format!(
                "malformed: this is a {} key file, a {} key is needed here",
                kind_of(other),
                kind_of(header)
            )))
        }
        Some(h) => {
            return Err(err(format!(
                "malformed: first line is {:?}, expected {header:?}",
                truncate(h, 60)
            )))
        }
        None => return Err(err("malformed: empty".into())),
    }
    let hex_line = lines
        .next()
        .ok_or_else(|| err("malformed: no key line after the header".into()))?;
    if lines.next().is_some() {
        return Err(err("malformed: more than one key line".into()));
    }
    let bytes =
        hex::decode(hex_line).map_err(|e| err(format!("malformed: key line is not hex ({e})")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        err(format!(
            "wrong key length: {} bytes, an ed25519 {} key is 32",
            bytes.len(),
            kind_of(header)
        ))
    })
}

fn kind_of(header: &str) -> &'static str {
    if header == SECRET_KEY_HEADER {
        "secret"
    } else {
        "public"
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

fn signed_message(manifest_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + manifest_bytes.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(manifest_bytes);
    m
}

/// The content of `manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSignature {
    pub key_id: KeyId,
    pub signature: [u8; 64],
}

impl ManifestSignature {
    pub fn to_file_text(&self) -> String {
        format!(
            "{SIGNATURE_HEADER}\nkey-id: {}\ned25519: {}\n",
            self.key_id,
            hex::encode(self.signature)
        )
    }

    /// Parses `manifest.sig` text; the error is the problem (the caller names the file).
    pub fn parse(text: &str) -> std::result::Result<ManifestSignature, String> {
        let mut lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        if lines.next() != Some(SIGNATURE_HEADER) {
            return Err(format!("first line must be {SIGNATURE_HEADER:?}"));
        }
        let (mut key_id, mut signature) = (None, None);
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("line {:?} is not `key: value`", truncate(line, 40)))?;
            let v = v.trim();
            match k.trim() {
                "key-id" => {
                    let b = hex::decode(v).map_err(|e| format!("key-id is not hex ({e})"))?;
                    key_id =
                        Some(KeyId(<[u8; 8]>::try_from(b.as_slice()).map_err(|_| {
                            format!("key-id is {} bytes, expected 8", b.len())
                        })?));
                }
                "ed25519" => {
                    let b = hex::decode(v).map_err(|e| format!("ed25519 is not hex ({e})"))?;
                    signature = Some(<[u8; 64]>::try_from(b.as_slice()).map_err(|_| {
                        format!("signature is {} bytes, an ed25519 signature is 64", b.len())
                    })?);
                }
                other => return Err(format!("unknown field {:?}", truncate(other, 40))),
            }
        }
        Ok(ManifestSignature {
            key_id: key_id.ok_or("no key-id line")?,
            signature: signature.ok_or("no ed25519 line")?,
        })
    }
}

/// The public keys a device accepts bundle signatures from.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: Vec<PublicKey>,
}

impl TrustedKeys {
    /// Loads every key file; the first bad one is an error naming it.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<TrustedKeys> {
        let keys = paths
            .iter()
            .map(|p| PublicKey::load(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(TrustedKeys { keys })
    }

    pub fn from_keys(keys: Vec<PublicKey>) -> TrustedKeys {
        TrustedKeys { keys }
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key ids, comma-separated (for messages).
    pub fn ids(&self) -> String {
        if self.keys.is_empty() {
            return "none".into();
        }
        let ids: Vec<String> = self.keys.iter().map(|k| k.id().to_string()).collect();
        ids.join(", ")
    }
}

/// What a device requires of a bundle's signature.
#[derive(Debug, Clone)]
pub enum TrustPolicy {
    /// `manifest.sig` must exist and verify with one of these keys.
    Require(TrustedKeys),
    /// Signatures are not checked (explicit development mode; print
    /// [`ALLOW_UNSIGNED_WARNING`] at start).
    AllowUnsigned,
}

/// What a bundle's signature check established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// Signed by this trusted key.
    Signed { key_id: KeyId },
    /// Not checked ([`TrustPolicy::AllowUnsigned`]).
    Unchecked,
}

impl fmt::Display for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Trust::Signed { key_id } => write!(f, "signed by trusted key {key_id}"),
            Trust::Unchecked => f.write_str("signature NOT checked"),
        }
    }
}

fn read_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    match crate::format::read_regular_file(&dir.join(name), crate::format::max_file_bytes(name)) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SignatureError::Io {
            dir: dir.to_path_buf(),
            file: name.into(),
            cause: e,
        }),
    }
}

/// Checks the signature of a read bundle against `policy`.
///
/// The signature is checked over the bytes of `manifest.json` as they are on disk now,
/// and the manifest parsed from exactly those bytes must equal the one `read` holds, so
/// what was checked is what is used.
pub fn check_bundle(read: &ReadBundle, policy: &TrustPolicy) -> Result<Trust> {
    let keys = match policy {
        TrustPolicy::AllowUnsigned => return Ok(Trust::Unchecked),
        TrustPolicy::Require(keys) => keys,
    };
    let dir = read.dir();
    let sig_bytes = read_file(dir, SIGNATURE_FILE)?.ok_or_else(|| SignatureError::Missing {
        dir: dir.to_path_buf(),
    })?;
    let malformed = |problem: String| SignatureError::Malformed {
        dir: dir.to_path_buf(),
        problem,
    };
    let text = std::str::from_utf8(&sig_bytes).map_err(|_| malformed("not UTF-8 text".into()))?;
    let sig = ManifestSignature::parse(text).map_err(malformed)?;
    let manifest_bytes = read_file(dir, MANIFEST_FILE)?.ok_or_else(|| {
        SignatureError::Bundle(BundleError::MissingFile {
            dir: dir.to_path_buf(),
            file: MANIFEST_FILE.into(),
        })
    })?;
    let candidates: Vec<&PublicKey> = keys.keys.iter().filter(|k| k.id() == sig.key_id).collect();
    if candidates.is_empty() {
        return Err(SignatureError::Untrusted {
            dir: dir.to_path_buf(),
            key_id: sig.key_id,
            trusted: keys.ids(),
        });
    }
    let signature = Signature::from_bytes(&sig.signature);
    if !candidates
        .iter()
        .any(|k| k.verify(&manifest_bytes, &signature))
    {
        return Err(SignatureError::BadSignature {
            dir: dir.to_path_buf(),
            key_id: sig.key_id,
        });
    }
    let signed: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|_| SignatureError::Changed {
            dir: dir.to_path_buf(),
        })?;
    if &signed != read.manifest() {
        return Err(SignatureError::Changed {
            dir: dir.to_path_buf(),
        });
    }
    Ok(Trust::Signed { key_id: sig.key_id })
}

/// Read → signature check → sha256 verification, in that order (a bundle with a bad
/// signature is refused before its files are hashed).
pub fn open_verified(dir: &Path, policy: &TrustPolicy) -> Result<(VerifiedBundle, Trust)> {
    let read = Bundle::read(dir)?;
    let trust = check_bundle(&read, policy)?;
    Ok((read.verify()?, trust))
}

/// Signs the bundle in `dir`: writes `manifest.sig` for its exact `manifest.json` bytes,
/// atomically (temporary file, fsync, rename, directory fsync), replacing any previous
/// signature. The bundle is checked first (manifest parsed, every sha256 verified), so
/// only a complete bundle gets signed.
pub fn sign_bundle(dir: &Path, key: &SecretKey) -> Result<ManifestSignature> {
    let read = Bundle::read(dir)?;
    let manifest_bytes = read_file(dir, MANIFEST_FILE)?.ok_or_else(|| {
        SignatureError::Bundle(BundleError::MissingFile {
            dir: dir.to_path_buf(),
            file: MANIFEST_FILE.into(),
        })
    })?;
    let parsed: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|_| SignatureError::Changed {
            dir: dir.to_path_buf(),
        })?;
    if &parsed != read.manifest() {
        return Err(SignatureError::Changed {
            dir: dir.to_path_buf(),
        });
    }
    read.verify()?;
    let sig = key.sign_manifest(&manifest_bytes);
    let io_err = |file: &str, cause: io::Error| SignatureError::Io {
        dir: dir.to_path_buf(),
        file: file.into(),
        cause,
    };
    crate::atomic::write_file_atomic(&dir.join(SIGNATURE_FILE), sig.to_file_text().as_bytes())
        .map_err(|e| io_err(SIGNATURE_FILE, e))?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{write_bundle, MODEL_FILE, TOKENIZER_FILE};

    fn sample(dir: &Path) {
        let m = Manifest::new("t", "tiny", vec!["a".into(), "b".into()], 8);
        write_bundle(dir, m, &[(MODEL_FILE, b"model"), (TOKENIZER_FILE, b"tok")]).unwrap();
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_seed(&[n; 32])
    }

    fn require(keys: &[&SecretKey]) -> TrustPolicy {
        TrustPolicy::Require(TrustedKeys::from_keys(
            keys.iter().map(|k| k.public()).collect(),
        ))
    }

    #[test]
    fn key_files_round_trip_and_pair_is_not_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("owner");
        let (sk, pk, id) = write_key_pair(&base).unwrap();
        assert_eq!(sk, tmp.path().join("owner.key"));
        let secret = SecretKey::load(&sk).unwrap();
        let public = PublicKey::load(&pk).unwrap();
        assert_eq!(secret.public(), public);
        assert_eq!(public.id(), id);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&sk).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let before = fs::read(&sk).unwrap();
        let err = write_key_pair(&base).unwrap_err().to_string();
        assert!(err.contains("owner.key: already exists; refusing"), "{err}");
        assert_eq!(fs::read(&sk).unwrap(), before);
        // Two generated keys differ.
        let (_, pk2, id2) = write_key_pair(&tmp.path().join("other")).unwrap();
        assert_ne!(id, id2);
        assert_ne!(fs::read(pk2).unwrap(), fs::read(pk).unwrap());
    }

    #[test]
    fn bad_key_files_are_named_with_the_problem() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.pub");
        let err = PublicKey::load(&p).unwrap_err().to_string();
        assert_eq!(err, format!("key file {}: not found", p.display()));

        fs::write(&p, "hello\n00").unwrap();
        let err = PublicKey::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("k.pub: malformed: first line is \"hello\""),
            "{err}"
        );

        fs::write(&p, format!("{PUBLIC_KEY_HEADER}\n{}\n", "ab".repeat(31))).unwrap();
        let err = PublicKey::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("wrong key length: 31 bytes, an ed25519 public key is 32"),
            "{err}"
        );

        fs::write(&p, format!("{PUBLIC_KEY_HEADER}\nzz\n")).unwrap();
        let err = PublicKey::load(&p).unwrap_err().to_string();
        assert!(err.contains("key line is not hex"), "{err}");

        // A secret key given where a public key is needed, and the reverse.
        fs::write(&p, key(1).to_file_text()).unwrap();
        let err = PublicKey::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("this is a secret key file, a public key is needed"),
            "{err}"
        );
        let err = SecretKey::parse(&key(1).public().to_file_text(), &p)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("this is a public key file, a secret key is needed"),
            "{err}"
        );
        fs::write(&p, [0xff, 0xfe]).unwrap();
        assert!(PublicKey::load(&p)
            .unwrap_err()
            .to_string()
            .contains("not UTF-8"));
    }

    #[cfg(unix)]
    #[test]
    fn readable_secret_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k.key");
        fs::write(&p, key(3).to_file_text()).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = SecretKey::load(&p).unwrap_err().to_string();
        assert!(err.contains("permissions 0644 are too open"), "{err}");
    }

    #[test]
    fn signed_bundle_verifies_only_with_a_trusted_key_and_untampered_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        sample(&dir);
        let (owner, stranger) = (key(1), key(2));

        let err = open_verified(&dir, &require(&[&owner])).unwrap_err();
        assert!(matches!(err, SignatureError::Missing { .. }), "{err}");
        assert!(err.to_string().ends_with(
            "b: manifest.sig missing (the bundle is unsigned; sign it with `tools export --sign KEY` or `tools sign`)"
        ));
        // Development mode accepts it.
        let (_, trust) = open_verified(&dir, &TrustPolicy::AllowUnsigned).unwrap();
        assert_eq!(trust, Trust::Unchecked);

        let sig = sign_bundle(&dir, &owner).unwrap();
        assert_eq!(sig.key_id, owner.public().id());
        let (v, trust) = open_verified(&dir, &require(&[&stranger, &owner])).unwrap();
        assert_eq!(
            trust,
            Trust::Signed {
                key_id: owner.public().id()
            }
        );
        assert_eq!(v.manifest().name, "t");

        let err = open_verified(&dir, &require(&[&stranger]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "signature by key {} is not trusted (trusted keys: {})",
                owner.public().id(),
                stranger.public().id()
            )),
            "{err}"
        );

        // Rename a label: still valid JSON and sha256 sums, but not what was signed.
        let mpath = dir.join(MANIFEST_FILE);
        let text = fs::read_to_string(&mpath).unwrap();
        fs::write(&mpath, text.replace("\"a\"", "\"evil\"")).unwrap();
        let err = open_verified(&dir, &require(&[&owner])).unwrap_err();
        assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
        assert!(
            err.to_string().contains("signature does not verify"),
            "{err}"
        );
        fs::write(&mpath, &text).unwrap();
        open_verified(&dir, &require(&[&owner])).unwrap();

        // A flipped model byte: the signature still holds, the sha256 does not.
        let model = dir.join(MODEL_FILE);
        fs::write(&model, b"modeL").unwrap();
        let err = open_verified(&dir, &require(&[&owner]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("file model.onnx: sha256 mismatch"), "{err}");
        // ... and a bundle that does not verify is not signed.
        assert!(sign_bundle(&dir, &owner).is_err());
    }

    #[test]
    fn malformed_signature_files_are_errors_not_panics() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b");
        sample(&dir);
        let owner = key(1);
        let good = sign_bundle(&dir, &owner).unwrap().to_file_text();
        let short = good.replace(&good[good.len() - 11..good.len() - 1], "");
        for (text, want) in [
            ("", "first line must be"),
            ("edge-classifier manifest signature v1\n", "no key-id line"),
            (short.as_str(), "signature is 59 bytes"),
            (
                "edge-classifier manifest signature v1\nkey-id: 12\n",
                "key-id is 1 bytes",
            ),
            (
                "edge-classifier manifest signature v1\nwhat\n",
                "is not `key: value`",
            ),
        ] {
            fs::write(dir.join(SIGNATURE_FILE), text).unwrap();
            let err = open_verified(&dir, &require(&[&owner]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("manifest.sig: ") && err.contains(want),
                "{text:?}: {err}"
            );
        }
        // A flipped signature byte.
        let mut flipped = good.clone().into_bytes();
        let i = flipped.len() - 2;
        flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
        fs::write(dir.join(SIGNATURE_FILE), flipped).unwrap();
        let err = open_verified(&dir, &require(&[&owner])).unwrap_err();
        assert!(matches!(err, SignatureError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn signature_file_text_round_trips() {
        let s = key(9).sign_manifest(b"{}");
        assert_eq!(ManifestSignature::parse(&s.to_file_text()).unwrap(), s);
        assert!(s.to_file_text().starts_with(SIGNATURE_HEADER));
    }
}
