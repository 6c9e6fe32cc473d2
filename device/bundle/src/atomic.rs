//! Writing files and directories all-or-nothing: a temporary sibling is written and
//! fsynced, renamed over the target, and the parent directory fsynced, so a crash or a
//! power cut leaves the old content or the new one, never a mix or half a file.
//!
//! Every such write in the workspace (bundles, signatures, checkpoints, tuning records,
//! reports) goes through here, so the sequence and its error handling exist once.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Writes `bytes` to `path` all-or-nothing: temporary file in the same directory, write,
/// fsync, rename over `path`, fsync of the directory. On failure `path` is untouched and
/// the temporary file removed.
pub fn write_file_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let staged = StagedFile::new(path);
    write_synced(staged.path(), bytes)?;
    staged.rename_into_place()
}

/// Creates (or truncates) `path`, writes `bytes` and fsyncs it. Not atomic by itself:
/// for files inside a staging directory that is renamed into place as a whole.
pub fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// fsyncs a directory, so new entries and renames in it survive a power cut. File systems
/// that cannot fsync a directory (`EINVAL`) and platforms where a directory cannot be
/// opened (Windows) are not an error: there is nothing more to do on them.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    match fs::File::open(dir) {
        Ok(f) => match f.sync_all() {
            Err(e) if e.kind() == io::ErrorKind::InvalidInput => Ok(()),
            r => r,
        },
        Err(_) if cfg!(windows) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `parent/.base.kind-PID-NANOS`: hidden, unique, on the same file system as the target
/// (so the final rename cannot cross file systems).
pub fn unique_sibling(parent: &Path, base: &str, kind: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    parent.join(format!(".{base}.{kind}-{}-{nanos}", std::process::id()))
}

/// `path`'s parent (`.` for a bare name) and final component.
fn parent_and_name(path: &Path) -> (PathBuf, Option<String>) {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    (parent, name)
}

/// A file written beside its destination, for writers that need a path rather than
/// bytes (e.g. a safetensors save): write [`StagedFile::path`], then
/// [`StagedFile::commit`]. Dropped without a commit, the temporary file is removed.
#[derive(Debug)]
pub struct StagedFile {
    target: PathBuf,
    tmp: PathBuf,
    done: bool,
}

impl StagedFile {
    /// Picks the temporary path next to `target`; nothing is created yet.
    pub fn new(target: &Path) -> StagedFile {
        let (parent, name) = parent_and_name(target);
        let tmp = unique_sibling(&parent, name.as_deref().unwrap_or("file"), "tmp");
        StagedFile {
            target: target.to_path_buf(),
            tmp,
            done: false,
        }
    }

    /// Where to write the new content.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// fsyncs the temporary file, renames it over the target and fsyncs the directory.
    pub fn commit(self) -> io::Result<()> {
        fs::File::open(&self.tmp)?.sync_all()?;
        self.rename_into_place()
    }

    fn rename_into_place(mut self) -> io::Result<()> {
        fs::rename(&self.tmp, &self.target)?;
        self.done = true;
        sync_dir(&parent_and_name(&self.target).0)
    }
}

impl Drop for StagedFile {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// The step of a staged-directory replacement that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The target path has no final component (`/`, `..`).
    NoFileName,
    CreateParent,
    CreateStaging,
    SyncStaged,
    MoveOldAside,
    MoveNewIn,
    RemoveOld,
    SyncParent,
}

/// A failed [`StagedDir`] step, the path it was acting on, and the OS error. Callers
/// word the message (a bundle writer says "moving the old bundle aside").
#[derive(Debug)]
pub struct StageError {
    pub step: Step,
    pub path: PathBuf,
    pub cause: io::Error,
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.cause)
    }
}

impl std::error::Error for StageError {}

fn stage_err(step: Step, path: &Path) -> impl FnOnce(io::Error) -> StageError + '_ {
    move |cause| StageError {
        step,
        path: path.to_path_buf(),
        cause,
    }
}

/// A new directory built beside its destination: a fresh hidden sibling of `out` that
/// [`StagedDir::commit`] renames into place (moving an existing `out` aside first and
/// removing it after), so `out` is never a mix of old and new files or half written.
/// Dropped without a commit, the staging directory is removed and `out` is untouched.
#[derive(Debug)]
pub struct StagedDir {
    out: PathBuf,
    parent: PathBuf,
    base: String,
    tmp: PathBuf,
    committed: bool,
}

impl StagedDir {
    /// Creates the staging directory next to `out` (creating `out`'s parent if needed).
    pub fn new(out: &Path) -> Result<StagedDir, StageError> {
        let (parent, base) = parent_and_name(out);
        let base = base.ok_or_else(|| StageError {
            step: Step::NoFileName,
            path: out.to_path_buf(),
            cause: io::Error::new(io::ErrorKind::InvalidInput, "has no final path component"),
        })?;
        fs::create_dir_all(&parent).map_err(stage_err(Step::CreateParent, &parent))?;
        let tmp = unique_sibling(&parent, &base, "tmp");
        fs::create_dir(&tmp).map_err(stage_err(Step::CreateStaging, &tmp))?;
        Ok(StagedDir {
            out: out.to_path_buf(),
            parent,
            base,
            tmp,
            committed: false,
        })
    }

    /// Where to write the new directory's files.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// fsyncs the staged directory and renames it to `out`; an existing `out` is moved
    /// aside first, put back if the rename fails, and removed once the new one is in
    /// place; last the parent is fsynced. (Between the two renames `out` is briefly
    /// absent, never partial.)
    pub fn commit(mut self) -> Result<(), StageError> {
        sync_dir(&self.tmp).map_err(stage_err(Step::SyncStaged, &self.tmp))?;
        let out = self.out.clone();
        let old = unique_sibling(&self.parent, &self.base, "old");
        let had_old = fs::symlink_metadata(&out).is_ok();
        if had_old {
            fs::rename(&out, &old).map_err(stage_err(Step::MoveOldAside, &out))?;
        }
        if let Err(e) = fs::rename(&self.tmp, &out) {
            if had_old {
                // Never leave `out` missing on failure.
                let _ = fs::rename(&old, &out);
            }
            return Err(stage_err(Step::MoveNewIn, &out)(e));
        }
        self.committed = true;
        if had_old {
            let _ = sync_dir(&self.parent);
            fs::remove_dir_all(&old).map_err(stage_err(Step::RemoveOld, &old))?;
        }
        sync_dir(&self.parent).map_err(stage_err(Step::SyncParent, &self.parent))
    }
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// Builds a directory with `fill` (given the staging path) and puts it at `out`
/// all-or-nothing ([`StagedDir`]).
pub fn replace_dir_atomically<T, E: From<StageError>>(
    out: &Path,
    fill: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    let stage = StagedDir::new(out)?;
    let value = fill(stage.path())?;
    stage.commit()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn file_is_replaced_whole_and_no_temporary_is_left() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("f.json");
        write_file_atomic(&p, b"one").unwrap();
        write_file_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(t.path()), ["f.json"]);
        // A failed write (missing directory) leaves nothing behind.
        assert!(write_file_atomic(&t.path().join("no/f"), b"x").is_err());
        // A staged file dropped without commit is removed, the target untouched.
        let s = StagedFile::new(&p);
        fs::write(s.path(), b"half").unwrap();
        drop(s);
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(t.path()), ["f.json"]);
    }

    #[test]
    fn staged_directory_replaces_all_or_nothing() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old"), b"o").unwrap();
        let r: Result<(), StageError> = replace_dir_atomically(&out, |tmp| {
            fs::write(tmp.join("half"), b"x").unwrap();
            Err(stage_err(Step::SyncStaged, tmp)(io::Error::other("failed")))
        });
        assert!(r.is_err());
        assert!(out.join("old").is_file());
        assert_eq!(names(t.path()), ["out"]);
        replace_dir_atomically(&out, |tmp| {
            fs::write(tmp.join("new"), b"n").map_err(stage_err(Step::SyncStaged, tmp))
        })
        .unwrap();
        assert_eq!(names(&out), ["new"]);
        assert_eq!(names(t.path()), ["out"]);
        let e = StagedDir::new(Path::new("/")).unwrap_err();
        assert_eq!(e.step, Step::NoFileName);
    }
}
