//! Model update over the link (`DeployBegin` / `DeployChunk` / `DeployCommit` /
//! `Rollback`, `docs/protocol.md` section 8), for `device serve --state DIR`.
//!
//! * The archive is written at each chunk's offset into `DIR/incoming-<sha>.part`
//!   (`<sha>` = hex sha256 of the whole archive, `DeployBegin.archive_sha256`), fsynced every
//!   [`SYNC_EVERY`] chunks and at commit. A `DeployBegin` with the same sha resumes: the
//!   answer's `have` is the part file's length (also after a device restart).
//! * Commit parses the archive, unpacks it into `DIR/incoming-<sha>.d/` and installs it
//!   with [`StateDir::install_with`] (signature under the service's trust policy, every
//!   sha256, self-test, atomic `current` switch). The self-test also loads the bundle as
//!   this service runs it (`--variant` or the tuned choice, its engine options). Only then
//!   is the served classifier swapped; until the switch the old one keeps answering. Any
//!   failure leaves `current` and the served model as they were (a bundle that installs
//!   but then does not load is switched back) and is answered with an `Error` saying why;
//!   `DeployDone` names the model now served.
//! * The unpacked copy is removed after a commit; the part file too, unless the commit
//!   failed for a reason other than the archive's bytes (the state directory busy, a
//!   full disk, a refused install): a retry then resumes with every byte held instead of
//!   sending the archive again.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use protocol::{truncated, ErrorCode, Response};

use super::dispatch::ModelInfo;
use crate::classify::{Classifier, ClassifyOptions};
use crate::engine::EngineOptions;
use crate::install::{default_self_test, InstallError, Slot, StateDir, SELF_TEST_TEXT};
use crate::variant;
use bundle::signature::{SignatureError, TrustPolicy};
use bundle::transfer;
use bundle::VerifiedBundle;

/// Prefix of transfer files in the state directory.
pub const INCOMING_PREFIX: &str = "incoming-";
/// Chunks written between two fsyncs of the part file.
pub const SYNC_EVERY: u32 = 64;

/// A value swapped whole while readers keep the one they took.
pub type Swap<T> = Arc<RwLock<Arc<T>>>;

/// Reads the current value of a [`Swap`].
pub fn current<T>(s: &Swap<T>) -> Arc<T> {
    Arc::clone(&s.read().unwrap_or_else(|p| p.into_inner()))
}

fn replace<T>(s: &Swap<T>, v: T) {
    *s.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(v);
}

struct Transfer {
    sha: [u8; 32],
    total: u32,
    file_count: u16,
    path: PathBuf,
    file: File,
    /// Bytes held contiguously from offset 0.
    len: u32,
    unsynced: u32,
}

/// The deploy side of `device serve --state`.
pub struct Deployer {
    state: StateDir,
    policy: TrustPolicy,
    options: ClassifyOptions,
    engine: EngineOptions,
    /// `device serve --variant`: the variant every model installed here runs (else the
    /// one `device tune` recorded for its files, else its manifest's default).
    variant: Option<String>,
    info: Swap<ModelInfo>,
    classifier: Swap<Classifier>,
    transfer: Mutex<Option<Transfer>>,
}

/// Why a commit failed: the received bytes themselves (the transfer is discarded), or
/// anything after them (it is kept for a retry).
enum Failure {
    Archive(String),
    Install(String),
}

fn err(id: u32, code: ErrorCode, detail: &str) -> Response {
    Response::error(Some(id), code, detail)
}

impl Deployer {
    pub fn new(
        state: StateDir,
        policy: TrustPolicy,
        options: ClassifyOptions,
        engine: EngineOptions,
        variant: Option<String>,
        info: Swap<ModelInfo>,
        classifier: Swap<Classifier>,
    ) -> Deployer {
        Deployer {
            state,
            policy,
            options,
            engine,
            variant,
            info,
            classifier,
            transfer: Mutex::new(None),
        }
    }

    fn dir_for(&self, sha: &[u8; 32], ext: &str) -> PathBuf {
        self.state
            .path()
            .join(format!("{INCOMING_PREFIX}{}.{ext}", hex::encode(sha)))
    }

    /// Removes transfer files other than `keep`.
    fn clean_incoming(&self, keep: Option<&PathBuf>) {
        let Ok(entries) = fs::read_dir(self.state.path()) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if !e.file_name().to_string_lossy().starts_with(INCOMING_PREFIX) || Some(&path) == keep
            {
                continue;
            }
            if path.is_dir() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::remove_file(&path);
            }
        }
    }

    pub fn begin(&self, id: u32, sha: [u8; 32], total: u32, file_count: u16) -> Response {
        let mut slot = self.transfer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = slot.as_ref() {
            if t.sha == sha && t.total == total && t.file_count == file_count {
                return Response::DeployStatus { id, have: t.len };
            }
        }
        *slot = None;
        // Written in place, not through bundle::atomic: the part file grows chunk by chunk
        // and is resumed after a restart; the sha256 checks of the install make it safe.
        let path = self.dir_for(&sha, "part");
        self.clean_incoming(Some(&path));
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) => {
                return Response::error_fmt(
                    Some(id),
                    ErrorCode::Internal,
                    format_args!("cannot create the transfer file: {e}"),
                )
            }
        };
        let mut len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len > u64::from(total) {
            let _ = file.set_len(0);
            len = 0;
        }
        let len = len as u32;
        *slot = Some(Transfer {
            sha,
            total,
            file_count,
            path,
            file,
            len,
            unsynced: 0,
        });
        eprintln!(
            "device serve: deploy {}: {total} bytes, {file_count} files, have {len}",
            &hex::encode(sha)[..16]
        );
        Response::DeployStatus { id, have: len }
    }

    pub fn chunk(&self, id: u32, offset: u32, data: &[u8]) -> Response {
        let mut slot = self.transfer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(t) = slot.as_mut() else {
            return err(
                id,
                ErrorCode::NotReady,
                "no deploy in progress (send DeployBegin)",
            );
        };
        let end = u64::from(offset) + data.len() as u64;
        if end > u64::from(t.total) {
            return err(id, ErrorCode::DecodeFailed, "chunk past total_bytes");
        }
        if offset > t.len {
            // A gap: a chunk was lost. Ask for the first missing byte.
            return Response::DeployAck { id, next: t.len };
        }
        if let Err(e) = t.file.write_all_at(data, u64::from(offset)) {
            return Response::error_fmt(
                Some(id),
                ErrorCode::Internal,
                format_args!("writing the transfer file: {e}"),
            );
        }
        t.len = t.len.max(end as u32);
        t.unsynced += 1;
        if t.unsynced >= SYNC_EVERY {
            let _ = t.file.sync_data();
            t.unsynced = 0;
        }
        Response::DeployAck { id, next: t.len }
    }

    pub fn commit(&self, id: u32) -> Response {
        let mut slot = self.transfer.lock().unwrap_or_else(|p| p.into_inner());
        let Some(t) = slot.as_ref() else {
            return err(
                id,
                ErrorCode::NotReady,
                "no deploy in progress (send DeployBegin)",
            );
        };
        if t.len < t.total {
            return Response::error_fmt(
                Some(id),
                ErrorCode::NotReady,
                format_args!("transfer incomplete: have {} of {} bytes", t.len, t.total),
            );
        }
        let t = slot.take().expect("checked above");
        let unpacked = self.dir_for(&t.sha, "d");
        let result = self.install(&t, &unpacked);
        let _ = fs::remove_dir_all(&unpacked);
        drop(t.file);
        let keep = matches!(&result, Err(Failure::Install(_)));
        if !keep {
            let _ = fs::remove_file(&t.path);
        }
        match result {
            Ok(()) => self.done(id),
            Err(Failure::Archive(why) | Failure::Install(why)) => {
                eprintln!("device serve: deploy refused: {why}");
                Response::Error {
                    id: Some(id),
                    code: ErrorCode::Internal,
                    detail: truncated(&why),
                }
            }
        }
    }

    fn install(&self, t: &Transfer, unpacked: &PathBuf) -> Result<(), Failure> {
        let install = |why: String| Failure::Install(why);
        t.file
            .sync_all()
            .map_err(|e| install(format!("fsync of the transfer: {e}")))?;
        let bytes = fs::read(&t.path).map_err(|e| install(format!("reading the transfer: {e}")))?;
        let entries = transfer::parse(&bytes, t.file_count, &t.sha)
            .map_err(|e| Failure::Archive(format!("bad archive: {e}")))?;
        let _ = fs::remove_dir_all(unpacked);
        fs::create_dir(unpacked).map_err(|e| install(format!("unpacking: {e}")))?;
        transfer::unpack(&entries, unpacked).map_err(|e| install(format!("unpacking: {e}")))?;
        drop(entries);
        let done = self
            .state
            .install_with(unpacked, &self.policy, &|v| self.self_test(v))
            .map_err(|e| install(short_reason(&e, unpacked, self.state.path())))?;
        eprintln!(
            "device serve: deploy: installed bundle {} ({}), {}; self-test: {}",
            done.id, done.name, done.trust, done.self_test
        );
        self.reload("the installed bundle").map_err(install)
    }

    /// The install's self-test for this service: the standard one ([`default_self_test`]),
    /// then the bundle as this service will run it (its variant choice and engine
    /// options) must load and answer, so a bundle that passes only with the defaults is
    /// refused before `current` moves.
    fn self_test(&self, v: &VerifiedBundle) -> Result<String, String> {
        let summary = default_self_test(v)?;
        let (served, _) = self.load(v)?;
        let p = served
            .classify(SELF_TEST_TEXT)
            .map_err(|e| format!("as served: {e}"))?;
        if !p.confidence.is_finite() {
            return Err(format!(
                "as served: {SELF_TEST_TEXT:?} gave confidence {}",
                p.confidence
            ));
        }
        Ok(summary)
    }

    /// `v` as this service runs it: [`variant::preferred`] (the `--variant`, else the
    /// tuned choice, else the default), this engine's options and classify options.
    fn load(&self, v: &VerifiedBundle) -> Result<(Classifier, variant::Choice), String> {
        let choice = variant::preferred(v, self.variant.as_deref()).map_err(|e| e.to_string())?;
        let classifier = variant::load_with(v, &choice, &self.engine)
            .map_err(|e| e.to_string())?
            .with_options(self.options);
        Ok((classifier, choice))
    }

    /// Loads the state directory's `current` bundle and swaps it in. Should `current` not
    /// load (the state directory would fall back to `previous`, the bundle this service
    /// was serving before the switch), the switch is undone and `what` named in the error:
    /// the answer to the host and the next boot then agree with the model served.
    fn reload(&self, what: &str) -> Result<(), String> {
        let ((classifier, choice, info), cur) = self
            .state
            .open_current_with(&self.policy, |v| {
                let (classifier, choice) = self.load(v)?;
                Ok((classifier, choice, ModelInfo::from_bundle(v)))
            })
            .map_err(|e| format!("reloading the current bundle: {e}"))?;
        if cur.slot != Slot::Current {
            let why = cur.fallback.unwrap_or_default();
            return Err(match self.state.rollback(&self.policy) {
                Ok(_) => format!("{what} does not load here, switched back: {why}"),
                Err(e) => format!("{what} does not load here ({why}); switching back: {e}"),
            });
        }
        super::prepare_plans(&classifier);
        // Classifier first: an Info naming the new model never precedes it.
        replace(&self.classifier, classifier);
        replace(&self.info, info);
        eprintln!(
            "device serve: now serving bundle {} ({:?}), variant {}",
            cur.id,
            cur.name,
            choice.label()
        );
        Ok(())
    }

    fn done(&self, id: u32) -> Response {
        let info = current(&self.info);
        Response::DeployDone {
            id,
            model_name: truncated(&info.name),
            model_sha256: info.model_sha256,
        }
    }

    pub fn rollback(&self, id: u32) -> Response {
        let _busy = self.transfer.lock().unwrap_or_else(|p| p.into_inner());
        let result = self
            .state
            .rollback(&self.policy)
            .map_err(|e| short_reason(&e, self.state.path(), self.state.path()))
            .and_then(|(now, was)| {
                eprintln!("device serve: rolled back to bundle {now} (was {was})");
                self.reload("the previous bundle")
            });
        match result {
            Ok(()) => self.done(id),
            Err(why) => Response::Error {
                id: Some(id),
                code: ErrorCode::Internal,
                detail: truncated(&why),
            },
        }
    }
}

/// A reason that fits `Error.detail` (96 bytes): the kind of failure first, local paths
/// dropped.
fn short_reason(e: &InstallError, bundle: &std::path::Path, state: &std::path::Path) -> String {
    let strip = |s: String| {
        s.replace(&format!("bundle {}: ", bundle.display()), "")
            .replace(&format!("{}: ", bundle.display()), "")
            .replace(&bundle.display().to_string(), "bundle")
            .replace(&format!("state directory {}: ", state.display()), "")
            .replace(&state.display().to_string(), "state")
    };
    match e {
        InstallError::Refused(SignatureError::Missing { .. }) => {
            "refused: unsigned bundle (no manifest.sig)".into()
        }
        InstallError::Refused(SignatureError::Untrusted { key_id, .. }) => {
            format!("refused: signature by untrusted key {key_id}")
        }
        InstallError::Refused(SignatureError::BadSignature { key_id, .. }) => {
            format!("refused: bad signature (key {key_id}): manifest.json not what was signed")
        }
        InstallError::Refused(other) => {
            let mut why = strip(other.to_string());
            // "file model.onnx: sha256 mismatch (manifest <hex>, file <hex>)": the hex
            // would push the file name out of the 96-byte detail.
            if let Some(k) = why.find("sha256 mismatch") {
                why.truncate(k + "sha256 mismatch".len());
            }
            format!("refused: {why}")
        }
        InstallError::SelfTest { problem, .. } => format!("refused: self-test failed: {problem}"),
        other => strip(other.to_string()),
    }
}
