//! The state directory: installed bundles, the `current` and `previous` ones, and an
//! all-or-nothing install with rollback. Used by the board (`device serve --state`,
//! `device classify --state`) and by the host writing to a mounted SD card
//! (`tools deploy --to DIR`).
//!
//! ```text
//! DIR/
//!   bundles/<id>/        installed bundles, complete and verified; <id> = the first 16 hex
//!                        digits of sha256(manifest.json) (so also of every file it lists)
//!   current  -> bundles/<id>     relative symlinks, so the tree works wherever the card is
//!   previous -> bundles/<id>     mounted
//!   staging-<random>/    an install in progress (removed when the directory is next opened)
//!   .lock                flock(2) held by an install or rollback
//! ```
//!
//! [`StateDir::install`] copies the bundle into `staging-<random>/`, fsyncs every file and
//! the directory, checks the signature and every sha256 *of the copy*, loads the copy with
//! the device's engine and runs a self-test ([`default_self_test`]: the manifest's
//! `reference` outputs when it has them, else one fixed text must classify), renames the
//! copy to `bundles/<id>` and only then switches: `previous.tmp -> old current`,
//! `rename(previous.tmp, previous)`, `current.tmp -> bundles/<id>`,
//! `rename(current.tmp, current)`, fsync of `DIR`. `rename(2)` replaces a symlink
//! atomically, so `current` always names a complete, verified bundle: an install killed
//! at any point leaves either the old or the new one current. Any failure before the
//! switch leaves `current` and `previous` untouched.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use crate::classify::{softmax, Classifier};
use bundle::atomic::{sync_dir, write_synced};
use bundle::signature::{
    check_bundle, open_verified, SignatureError, Trust, TrustPolicy, SIGNATURE_FILE,
};
use bundle::{Bundle, VerifiedBundle, MANIFEST_FILE};

/// Folder of installed bundles.
pub const BUNDLES_DIR: &str = "bundles";
/// Symlink to the bundle in use.
pub const CURRENT_LINK: &str = "current";
/// Symlink to the bundle used before the last install or rollback.
pub const PREVIOUS_LINK: &str = "previous";
/// Prefix of in-progress install directories.
pub const STAGING_PREFIX: &str = "staging-";
/// Lock file held during install, rollback and clean-up.
pub const LOCK_FILE: &str = ".lock";
/// The text classified by the self-test when the manifest has no reference outputs.
pub const SELF_TEST_TEXT: &str = "turn on the lights";
/// Largest logit difference from a manifest `reference` output the self-test accepts.
pub const REFERENCE_TOLERANCE: f32 = 1e-3;

/// Everything that can go wrong with the state directory; each names the directory or
/// bundle and the problem.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The state directory cannot be created, read or written.
    #[error("state directory {}: {problem}", .dir.display())]
    State { dir: PathBuf, problem: String },

    /// Another install or rollback holds the lock.
    #[error("state directory {}: another install or rollback is running (lock {LOCK_FILE} is held)", .dir.display())]
    Busy { dir: PathBuf },

    /// The bundle to install failed its signature or sha256 checks.
    #[error("install refused: {0}")]
    Refused(SignatureError),

    /// The bundle is intact but does not load or classify correctly on this device.
    #[error("install refused: bundle {}: self-test failed: {problem}", .src.display())]
    SelfTest { src: PathBuf, problem: String },

    /// No bundle is installed.
    #[error("state directory {}: no bundle installed ({CURRENT_LINK} is missing); install one with `tools deploy --to DIR --bundle BUNDLE`", .dir.display())]
    NoCurrent { dir: PathBuf },

    /// Neither `current` nor `previous` could be used.
    #[error("state directory {}: no usable bundle: {problems}", .dir.display())]
    NothingUsable { dir: PathBuf, problems: String },

    /// Rollback is not possible.
    #[error("state directory {}: cannot roll back: {problem}", .dir.display())]
    Rollback { dir: PathBuf, problem: String },
}

type Result<T, E = InstallError> = std::result::Result<T, E>;

/// A self-test: given the verified staged bundle, a one-line summary or the problem.
/// It may borrow (a service's settings), for as long as the install runs.
pub type SelfTest<'a> = dyn Fn(&VerifiedBundle) -> std::result::Result<String, String> + 'a;

/// The standard self-test: loads the bundle with the device's engine (tokenizer and model
/// must fit together); then, if the manifest has `reference` outputs for the variant the
/// engine loads, each reference text must give the recorded label and logits within
/// [`REFERENCE_TOLERANCE`]; otherwise [`SELF_TEST_TEXT`] must classify to a valid label
/// with finite probabilities.
pub fn default_self_test(bundle: &VerifiedBundle) -> std::result::Result<String, String> {
    let classifier = Classifier::load(bundle).map_err(|e| e.to_string())?;
    let manifest = bundle.manifest();
    let variant = manifest.default_variant_name();
    let references: Vec<_> = manifest
        .reference
        .iter()
        .filter_map(|r| r.outputs.get(&variant).map(|o| (&r.text, o)))
        .collect();
    if references.is_empty() {
        let p = classifier
            .classify(SELF_TEST_TEXT)
            .map_err(|e| e.to_string())?;
        if p.label_index >= manifest.labels.len() || !p.confidence.is_finite() {
            return Err(format!(
                "{SELF_TEST_TEXT:?} gave label index {} with confidence {}",
                p.label_index, p.confidence
            ));
        }
        return Ok(format!(
            "loaded; {SELF_TEST_TEXT:?} -> {} ({:.2})",
            p.label, p.confidence
        ));
    }
    for (text, expected) in &references {
        let enc = classifier
            .encoder()
            .encode(text)
            .map_err(|e| e.to_string())?;
        let batch = classifier.encoder().batch(std::slice::from_ref(&enc));
        let (logits, _) = classifier
            .engine()
            .run_batch(&batch)
            .map_err(|e| e.to_string())?;
        let probs = softmax(&logits);
        let best = (0..probs.len())
            .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap_or(0);
        let diff = crate::classify::max_abs_diff(&logits, &expected.logits);
        if best != expected.label_index || diff.is_nan() || diff > REFERENCE_TOLERANCE {
            return Err(format!(
                "reference text {text:?} (variant {variant}): label index {best}, recorded {}; \
                 max logit difference {diff:.2e} (tolerance {REFERENCE_TOLERANCE:.0e})",
                expected.label_index
            ));
        }
    }
    Ok(format!(
        "{} reference texts give the recorded outputs (variant {variant})",
        references.len()
    ))
}

/// Which link a bundle was opened through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Current,
    Previous,
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Slot::Current => CURRENT_LINK,
            Slot::Previous => PREVIOUS_LINK,
        })
    }
}

/// What [`StateDir::open_current`] opened.
#[derive(Debug, Clone)]
pub struct CurrentInfo {
    /// Bundle id (`bundles/<id>`).
    pub id: String,
    /// The bundle's directory.
    pub dir: PathBuf,
    /// Manifest `name`.
    pub name: String,
    /// `current`, or `previous` after a fallback.
    pub slot: Slot,
    pub trust: Trust,
    /// Why `current` was not used (set when `slot` is [`Slot::Previous`]).
    pub fallback: Option<String>,
}

/// What [`StateDir::install`] did.
#[derive(Debug, Clone)]
pub struct Installed {
    pub id: String,
    pub name: String,
    pub trust: Trust,
    /// The self-test's summary.
    pub self_test: String,
    /// The id `current` named before (now `previous`), if any.
    pub replaced: Option<String>,
    /// The bundle was already current; nothing was switched.
    pub already_current: bool,
}

/// One installed bundle, as [`StateDir::status`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStatus {
    pub id: String,
    /// Manifest name, or the problem reading it.
    pub name: std::result::Result<String, String>,
}

/// A state directory (see the module documentation for the layout).
#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

/// An exclusive flock on `DIR/.lock`, released on drop (or by the kernel if the process
/// dies).
struct Lock {
    _file: fs::File,
}

impl StateDir {
    /// Opens an existing state directory, and — when no install is running and it is
    /// writable — removes stale `staging-*` directories and `*.tmp` links left by an
    /// interrupted install. Works on a read-only directory too.
    pub fn open(dir: impl AsRef<Path>) -> Result<StateDir> {
        let dir = dir.as_ref().to_path_buf();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(state_err(&dir, "not a directory")),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(state_err(&dir, "does not exist"))
            }
            Err(e) => return Err(state_err(&dir, format!("cannot read: {e}"))),
        }
        let s = StateDir { dir };
        if let Ok(Some(_lock)) = s.try_lock() {
            s.clean_stale();
        }
        Ok(s)
    }

    /// Creates the state directory (and `bundles/`) if needed, checks it is writable, and
    /// opens it.
    pub fn create(dir: impl AsRef<Path>) -> Result<StateDir> {
        let dir = dir.as_ref().to_path_buf();
        if let Ok(m) = fs::metadata(&dir) {
            if !m.is_dir() {
                return Err(state_err(&dir, "exists and is not a directory"));
            }
        }
        fs::create_dir_all(dir.join(BUNDLES_DIR))
            .map_err(|e| state_err(&dir, format!("cannot create {BUNDLES_DIR}/: {e}")))?;
        let probe = dir.join(format!(".write-test-{}", std::process::id()));
        fs::write(&probe, b"").map_err(|e| state_err(&dir, format!("not writable: {e}")))?;
        let _ = fs::remove_file(&probe);
        Self::open(dir)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Installs the bundle in `src` with [`default_self_test`].
    pub fn install(&self, src: &Path, policy: &TrustPolicy) -> Result<Installed> {
        self.install_with(src, policy, &default_self_test)
    }

    /// Installs the bundle in `src`, all or nothing (see the module documentation), with
    /// `self_test` deciding whether the loaded copy works.
    pub fn install_with(
        &self,
        src: &Path,
        policy: &TrustPolicy,
        self_test: &SelfTest<'_>,
    ) -> Result<Installed> {
        // Check the source first, so errors name the bundle the user gave.
        let (source, _) = open_verified(src, policy).map_err(InstallError::Refused)?;
        let _lock = self.lock()?;
        self.clean_stale();

        // Not atomic::StagedDir: the copy is verified and self-tested before it is renamed,
        // never replaces an installed bundle, and its name is what `clean_stale` removes.
        let staging = self.dir.join(format!("{STAGING_PREFIX}{}", random_hex(8)));
        fs::create_dir(&staging).map_err(|e| {
            state_err(
                &self.dir,
                format!("cannot create {}: {e}", staging.display()),
            )
        })?;
        let result = self.stage_test_and_switch(src, &source, &staging, policy, self_test);
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }

    fn stage_test_and_switch(
        &self,
        src: &Path,
        source: &VerifiedBundle,
        staging: &Path,
        policy: &TrustPolicy,
        self_test: &SelfTest<'_>,
    ) -> Result<Installed> {
        let write_err = |file: &str, e: io::Error| {
            state_err(
                &self.dir,
                format!("writing {}/{file}: {e}", staging.display()),
            )
        };
        // The verified bytes of every listed file, then the manifest and signature as
        // they are in `src` (re-checked below on the copy).
        for name in source.manifest().files.keys() {
            let bytes = source.file_bytes(name).unwrap_or_default();
            write_synced(&staging.join(name), bytes).map_err(|e| write_err(name, e))?;
        }
        for name in [SIGNATURE_FILE, MANIFEST_FILE] {
            match bundle::read_regular_file(&src.join(name), bundle::max_file_bytes(name)) {
                Ok(bytes) => {
                    write_synced(&staging.join(name), &bytes).map_err(|e| write_err(name, e))?
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && name == SIGNATURE_FILE => {}
                Err(e) => {
                    return Err(InstallError::Refused(SignatureError::Io {
                        dir: src.to_path_buf(),
                        file: name.into(),
                        cause: e,
                    }))
                }
            }
        }
        sync_dir(staging).map_err(|e| write_err(".", e))?;

        // What gets installed is checked and tested from the copy itself.
        let (staged, trust) = open_verified(staging, policy).map_err(|e| {
            InstallError::Refused(SignatureError::Malformed {
                dir: src.to_path_buf(),
                problem: format!("the copy in the state directory does not verify (was the bundle changed during the install?): {e}"),
            })
        })?;
        let summary = self_test(&staged).map_err(|problem| InstallError::SelfTest {
            src: src.to_path_buf(),
            problem,
        })?;
        let manifest_bytes =
            fs::read(staging.join(MANIFEST_FILE)).map_err(|e| write_err(MANIFEST_FILE, e))?;
        let id = bundle::sha256_hex(&manifest_bytes)[..16].to_string();
        let name = staged.manifest().name.clone();
        drop(staged);

        let bundles = self.dir.join(BUNDLES_DIR);
        fs::create_dir_all(&bundles)
            .map_err(|e| state_err(&self.dir, format!("cannot create {BUNDLES_DIR}/: {e}")))?;
        let target = bundles.join(&id);
        if fs::symlink_metadata(&target).is_ok() {
            // Installed before: keep it if it still verifies, else replace it.
            if self.verify_installed(&id, policy).is_ok() {
                let _ = fs::remove_dir_all(staging);
            } else {
                let aside = self
                    .dir
                    .join(format!("{STAGING_PREFIX}old-{}", random_hex(8)));
                fs::rename(&target, &aside)
                    .map_err(|e| state_err(&self.dir, format!("moving broken {id} aside: {e}")))?;
                let _ = fs::remove_dir_all(&aside);
            }
        }
        if fs::symlink_metadata(&target).is_err() {
            fs::rename(staging, &target).map_err(|e| {
                state_err(
                    &self.dir,
                    format!("moving the staged bundle to {}: {e}", target.display()),
                )
            })?;
        }
        sync_dir(&bundles)
            .map_err(|e| state_err(&self.dir, format!("fsync {BUNDLES_DIR}/: {e}")))?;

        let old = self.link_id(CURRENT_LINK);
        let already_current = old.as_deref() == Some(id.as_str());
        if !already_current {
            if let Some(old) = &old {
                self.set_link(PREVIOUS_LINK, old)?;
            }
            self.set_link(CURRENT_LINK, &id)?;
        }
        self.remove_unreferenced();
        Ok(Installed {
            id,
            name,
            trust,
            self_test: summary,
            replaced: if already_current { None } else { old },
            already_current,
        })
    }

    /// Makes `previous` current again (and the current one `previous`), after checking
    /// that the previous bundle still verifies under `policy`.
    pub fn rollback(&self, policy: &TrustPolicy) -> Result<(String, String)> {
        let _lock = self.lock()?;
        let rb = |problem: String| InstallError::Rollback {
            dir: self.dir.clone(),
            problem,
        };
        let prev = self.link_id(PREVIOUS_LINK).ok_or_else(|| {
            rb(format!(
                "no {PREVIOUS_LINK} bundle (only one was ever installed)"
            ))
        })?;
        let cur = self.link_id(CURRENT_LINK);
        if cur.as_deref() == Some(prev.as_str()) {
            return Err(rb(format!(
                "{PREVIOUS_LINK} and {CURRENT_LINK} are the same bundle {prev}"
            )));
        }
        self.verify_installed(&prev, policy)
            .map_err(|e| rb(format!("previous bundle {prev} does not verify: {e}")))?;
        self.set_link(CURRENT_LINK, &prev)?;
        if let Some(cur) = &cur {
            self.set_link(PREVIOUS_LINK, cur)?;
        }
        Ok((prev, cur.unwrap_or_default()))
    }

    /// Verifies `current` (signature + every sha256) and returns it. If it is broken,
    /// falls back to `previous`, printing a WARNING line on stderr and setting
    /// [`CurrentInfo::fallback`].
    pub fn open_current(&self, policy: &TrustPolicy) -> Result<(VerifiedBundle, CurrentInfo)> {
        self.open_current_with(policy, |v| Ok(v.clone()))
    }

    /// As [`open_current`](Self::open_current), with `load` (e.g. `Classifier::load`)
    /// part of the check: a bundle that verifies but does not load also falls back.
    pub fn open_current_with<T>(
        &self,
        policy: &TrustPolicy,
        mut load: impl FnMut(&VerifiedBundle) -> std::result::Result<T, String>,
    ) -> Result<(T, CurrentInfo)> {
        let mut problems = Vec::new();
        for slot in [Slot::Current, Slot::Previous] {
            let link = slot.to_string();
            let Some(id) = self.link_id(&link) else {
                if slot == Slot::Current {
                    if fs::symlink_metadata(self.dir.join(&link)).is_err() {
                        return Err(InstallError::NoCurrent {
                            dir: self.dir.clone(),
                        });
                    }
                    problems.push(format!("{link}: not a link to {BUNDLES_DIR}/<id>"));
                }
                continue;
            };
            let attempt = self
                .verify_installed(&id, policy)
                .map_err(|e| e.to_string())
                .and_then(|(v, trust)| load(&v).map(|t| (t, v, trust)));
            match attempt {
                Ok((t, v, trust)) => {
                    let fallback = (slot == Slot::Previous).then(|| problems.join("; "));
                    if let Some(why) = &fallback {
                        eprintln!(
                            "WARNING: state directory {}: the current bundle is broken ({why}); \
                             FALLING BACK to the previous bundle {id}",
                            self.dir.display()
                        );
                    }
                    let info = CurrentInfo {
                        id,
                        dir: v.dir().to_path_buf(),
                        name: v.manifest().name.clone(),
                        slot,
                        trust,
                        fallback,
                    };
                    return Ok((t, info));
                }
                Err(e) => problems.push(format!("{link} bundle {id}: {e}")),
            }
        }
        Err(InstallError::NothingUsable {
            dir: self.dir.clone(),
            problems: problems.join("; "),
        })
    }

    /// The ids and names `current` and `previous` point to (without verifying).
    pub fn status(&self) -> (Option<LinkStatus>, Option<LinkStatus>) {
        let get = |link: &str| {
            self.link_id(link).map(|id| {
                let name = Bundle::read(self.dir.join(BUNDLES_DIR).join(&id))
                    .map(|r| r.manifest().name.clone())
                    .map_err(|e| e.to_string());
                LinkStatus { id, name }
            })
        };
        (get(CURRENT_LINK), get(PREVIOUS_LINK))
    }

    fn verify_installed(
        &self,
        id: &str,
        policy: &TrustPolicy,
    ) -> std::result::Result<(VerifiedBundle, Trust), SignatureError> {
        let dir = self.dir.join(BUNDLES_DIR).join(id);
        let read = Bundle::read(&dir)?;
        let trust = check_bundle(&read, policy)?;
        Ok((read.verify()?, trust))
    }

    /// The id a link names, if it is a link to `bundles/<hex id>`.
    fn link_id(&self, link: &str) -> Option<String> {
        let target = fs::read_link(self.dir.join(link)).ok()?;
        let mut parts = target.components();
        let first = parts.next()?.as_os_str();
        let id = parts.next()?.as_os_str().to_str()?.to_string();
        let valid = first == BUNDLES_DIR
            && parts.next().is_none()
            && !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_hexdigit());
        valid.then_some(id)
    }

    /// Points `link` at `bundles/<id>` atomically: new symlink `link.tmp`, rename over
    /// `link`, fsync the directory. (A symlink, so not [`bundle::atomic`], which writes
    /// files; the fixed `.tmp` name is what `clean_stale` removes.)
    fn set_link(&self, link: &str, id: &str) -> Result<()> {
        let tmp = self.dir.join(format!("{link}.tmp"));
        let done = (|| -> io::Result<()> {
            match fs::remove_file(&tmp) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            symlink(Path::new(BUNDLES_DIR).join(id), &tmp)?;
            fs::rename(&tmp, self.dir.join(link))?;
            sync_dir(&self.dir)
        })();
        done.map_err(|e| state_err(&self.dir, format!("switching {link} to {id}: {e}")))
    }

    /// Removes stale staging directories and temporary links (lock must be held).
    fn clean_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let path = e.path();
            if name.starts_with(STAGING_PREFIX) {
                let _ = fs::remove_dir_all(&path);
            } else if name == format!("{CURRENT_LINK}.tmp")
                || name == format!("{PREVIOUS_LINK}.tmp")
            {
                let _ = fs::remove_file(&path);
            }
        }
    }

    /// Removes installed bundles neither `current` nor `previous` names (lock held). Each
    /// is renamed to a staging name first, so `bundles/` never holds a half-deleted one.
    fn remove_unreferenced(&self) {
        let keep: Vec<String> = [CURRENT_LINK, PREVIOUS_LINK]
            .iter()
            .filter_map(|l| self.link_id(l))
            .collect();
        let Ok(entries) = fs::read_dir(self.dir.join(BUNDLES_DIR)) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if keep.contains(&name) {
                continue;
            }
            let aside = self
                .dir
                .join(format!("{STAGING_PREFIX}gc-{}", random_hex(8)));
            if fs::rename(e.path(), &aside).is_ok() {
                let _ = fs::remove_dir_all(&aside);
            }
        }
    }

    fn lock(&self) -> Result<Lock> {
        self.try_lock()?.ok_or_else(|| InstallError::Busy {
            dir: self.dir.clone(),
        })
    }

    /// Takes the lock without waiting: `Ok(None)` when someone else holds it.
    fn try_lock(&self) -> Result<Option<Lock>> {
        let path = self.dir.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| state_err(&self.dir, format!("cannot open {LOCK_FILE}: {e}")))?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(Lock { _file: file }));
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            Ok(None)
        } else {
            Err(state_err(
                &self.dir,
                format!("cannot lock {LOCK_FILE}: {e}"),
            ))
        }
    }
}

fn state_err(dir: &Path, problem: impl Into<String>) -> InstallError {
    InstallError::State {
        dir: dir.to_path_buf(),
        problem: problem.into(),
    }
}

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    if getrandom::fill(&mut b).is_err() {
        // Uniqueness only matters against our own leftovers, which the lock excludes.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        return format!("{}-{nanos}", std::process::id());
    }
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bundle::signature::{sign_bundle, SecretKey, TrustedKeys};
    use bundle::{write_bundle, Manifest, MODEL_FILE, TOKENIZER_FILE};

    /// Bundles with fake model bytes: the self-test is replaced by one that checks the
    /// model bytes do not say "bad".
    fn fake(dir: &Path, name: &str, model: &[u8], key: Option<&SecretKey>) -> PathBuf {
        let d = dir.join(name);
        let m = Manifest::new(name, "tiny", vec!["a".into(), "b".into()], 8);
        write_bundle(&d, m, &[(MODEL_FILE, model), (TOKENIZER_FILE, b"tok")]).unwrap();
        if let Some(k) = key {
            sign_bundle(&d, k).unwrap();
        }
        d
    }

    fn test_ok(b: &VerifiedBundle) -> std::result::Result<String, String> {
        if b.model_bytes() == b"bad" {
            Err("model says bad".into())
        } else {
            Ok("ok".into())
        }
    }

    fn policy(k: &SecretKey) -> TrustPolicy {
        TrustPolicy::Require(TrustedKeys::from_keys(vec![k.public()]))
    }

    fn current_name(s: &StateDir, p: &TrustPolicy) -> String {
        s.open_current(p).unwrap().1.name
    }

    #[test]
    fn install_switch_rollback_and_gc() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[5; 32]);
        let p = policy(&key);
        let state = StateDir::create(tmp.path().join("state")).unwrap();
        assert!(matches!(
            state.open_current(&p),
            Err(InstallError::NoCurrent { .. })
        ));

        let a = fake(tmp.path(), "a", b"model a", Some(&key));
        let b = fake(tmp.path(), "b", b"model b", Some(&key));
        let c = fake(tmp.path(), "c", b"model c", Some(&key));
        let ia = state.install_with(&a, &p, &test_ok).unwrap();
        assert_eq!(ia.replaced, None);
        assert_eq!(current_name(&state, &p), "a");
        let err = state.rollback(&p).unwrap_err().to_string();
        assert!(err.contains("no previous bundle"), "{err}");

        let ib = state.install_with(&b, &p, &test_ok).unwrap();
        assert_eq!(ib.replaced.as_deref(), Some(ia.id.as_str()));
        assert_eq!(current_name(&state, &p), "b");
        // Installing the current bundle again changes nothing.
        assert!(
            state
                .install_with(&b, &p, &test_ok)
                .unwrap()
                .already_current
        );

        state.rollback(&p).unwrap();
        assert_eq!(current_name(&state, &p), "a");
        state.rollback(&p).unwrap();
        assert_eq!(current_name(&state, &p), "b");

        state.install_with(&c, &p, &test_ok).unwrap();
        let (cur, prev) = state.status();
        assert_eq!(cur.unwrap().name.unwrap(), "c");
        assert_eq!(prev.unwrap().name.unwrap(), "b");
        // Only current and previous are kept; nothing staged is left.
        let mut kept: Vec<_> = fs::read_dir(state.path().join(BUNDLES_DIR))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        kept.sort();
        assert_eq!(kept.len(), 2);
        assert!(!fs::read_dir(state.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)));
    }

    #[test]
    fn refused_installs_leave_current_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[5; 32]);
        let other = SecretKey::from_seed(&[6; 32]);
        let p = policy(&key);
        let state = StateDir::create(tmp.path().join("state")).unwrap();
        let a = fake(tmp.path(), "a", b"model a", Some(&key));
        state.install_with(&a, &p, &test_ok).unwrap();
        let before = state.status();

        let wrong = fake(tmp.path(), "wrong", b"model w", Some(&other));
        let err = state
            .install_with(&wrong, &p, &test_ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is not trusted"), "{err}");

        let unsigned = fake(tmp.path(), "unsigned", b"model u", None);
        let err = state
            .install_with(&unsigned, &p, &test_ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains("manifest.sig missing"), "{err}");

        let flipped = fake(tmp.path(), "flipped", b"model f", Some(&key));
        fs::write(flipped.join(MODEL_FILE), b"model F").unwrap();
        let err = state
            .install_with(&flipped, &p, &test_ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sha256 mismatch"), "{err}");

        let bad = fake(tmp.path(), "bad", b"bad", Some(&key));
        let err = state
            .install_with(&bad, &p, &test_ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains("self-test failed: model says bad"), "{err}");

        assert_eq!(state.status(), before);
        assert_eq!(current_name(&state, &p), "a");
        assert!(!fs::read_dir(state.path()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)));
    }

    #[test]
    fn broken_current_falls_back_to_previous() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[5; 32]);
        let p = policy(&key);
        let state = StateDir::create(tmp.path().join("state")).unwrap();
        state
            .install_with(&fake(tmp.path(), "a", b"model a", Some(&key)), &p, &test_ok)
            .unwrap();
        let ib = state
            .install_with(&fake(tmp.path(), "b", b"model b", Some(&key)), &p, &test_ok)
            .unwrap();
        // Corrupt the installed current bundle (bit rot on the card).
        let model = state.path().join(BUNDLES_DIR).join(&ib.id).join(MODEL_FILE);
        fs::write(&model, b"model B").unwrap();
        let (v, info) = state.open_current(&p).unwrap();
        assert_eq!(info.slot, Slot::Previous);
        assert_eq!(v.manifest().name, "a");
        assert!(info.fallback.unwrap().contains("sha256 mismatch"));
        // Reinstalling the same bundle repairs it in place.
        let again = state
            .install_with(&tmp.path().join("b"), &p, &test_ok)
            .unwrap();
        assert!(again.already_current);
        let (_, info) = state.open_current(&p).unwrap();
        assert_eq!((info.slot, info.name.as_str()), (Slot::Current, "b"));
        // A previous bundle that no longer verifies is not rolled back to.
        let (_, prev) = state.status();
        fs::remove_dir_all(state.path().join(BUNDLES_DIR).join(prev.unwrap().id)).unwrap();
        let err = state.rollback(&p).unwrap_err().to_string();
        assert!(err.contains("cannot roll back: previous bundle"), "{err}");
    }

    #[test]
    fn stale_staging_is_collected_at_open_and_bad_dirs_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        StateDir::create(&dir).unwrap();
        fs::create_dir(dir.join("staging-dead")).unwrap();
        fs::write(dir.join("staging-dead/model.onnx"), b"half").unwrap();
        symlink("bundles/x", dir.join("current.tmp")).unwrap();
        StateDir::open(&dir).unwrap();
        assert!(!dir.join("staging-dead").exists());
        assert!(fs::symlink_metadata(dir.join("current.tmp")).is_err());

        let err = StateDir::open(tmp.path().join("nope"))
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("nope: does not exist"), "{err}");
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        let err = StateDir::create(&file).unwrap_err().to_string();
        assert!(
            err.ends_with("file: exists and is not a directory"),
            "{err}"
        );
        let err = StateDir::create(file.join("sub")).unwrap_err().to_string();
        assert!(err.contains("cannot create bundles/"), "{err}");
    }

    #[test]
    fn concurrent_install_is_refused_while_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let key = SecretKey::from_seed(&[5; 32]);
        let state = StateDir::create(tmp.path().join("state")).unwrap();
        let _held = state.lock().unwrap();
        let a = fake(tmp.path(), "a", b"model a", Some(&key));
        let err = state.install_with(&a, &policy(&key), &test_ok).unwrap_err();
        assert!(matches!(err, InstallError::Busy { .. }), "{err}");
    }
}
