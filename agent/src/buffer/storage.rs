//! The file-system side of the buffer: fsync of sled's files, the
//! sequence-number floor beside them, and moving a corrupt buffer aside.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, ErrorKind, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// sled's log, rewritten in place.
const SLED_LOG_FILE: &str = "db";

/// The file in the buffer directory that bounds the sequence numbers ever
/// issued (see [`SeqFloor`]). sled ignores files it does not know.
pub(super) const SEQ_FLOOR_FILE: &str = "gridlink-seq-floor";

/// Makes what sled has written reach stable storage.
///
/// sled 0.34 writes its log with `sync_file_range`, which neither flushes
/// the disk's cache nor the file's metadata (sled#1351), and writes large
/// pages as files under `blobs/` without syncing them at all. So after
/// `Db::flush` this `fsync`s every file under the directory that changed
/// since its last sync, and each directory whose entries changed.
///
/// `db`, the log that sled overwrites in place, is synced every time: a
/// same-length rewrite within one tick of the kernel's coarse clock leaves
/// length and modification time as they were. Every other file sled writes
/// once and never changes (`conf`, `snap.*` renamed into place, blobs
/// created with `create_new`, the sequence floor renamed into place), so it
/// is synced when its inode or length differ from its last sync (the
/// modification time is compared too, as a further guard); a write still
/// under way when it is looked at changes the length again, and the next
/// sync catches it.
#[derive(Debug, Default)]
pub(super) struct DirSync {
    /// What each file looked like when it was last synced, per directory.
    dirs: HashMap<PathBuf, HashMap<OsString, FileState>>,
}

/// The identity and version of a file, as far as syncing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileState {
    ino: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl DirSync {
    /// `fsync`s what changed under `dir` (and `dir/blobs`).
    pub(super) fn sync(&mut self, dir: &Path) -> io::Result<()> {
        self.sync_dir(&dir.join("blobs"))?;
        self.sync_dir(dir)
    }

    fn sync_dir(&mut self, dir: &Path) -> io::Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let synced = self.dirs.entry(dir.to_path_buf()).or_default();
        let mut now = HashMap::with_capacity(synced.len());
        let mut entries_changed = false;
        for entry in entries {
            let entry = entry?;
            let meta = match entry.metadata() {
                Ok(meta) if meta.is_file() => meta,
                Ok(_) => continue,
                // Removed by sled between listing and looking.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let state = FileState {
                ino: meta.ino(),
                len: meta.len(),
                modified: meta.modified().ok(),
            };
            let name = entry.file_name();
            match synced.get(&name) {
                Some(old) if *old == state && name != SLED_LOG_FILE => {}
                old => {
                    entries_changed |= old.is_none_or(|old| old.ino != state.ino);
                    sync_path(&entry.path())?;
                }
            }
            now.insert(name, state);
        }
        entries_changed |= now.len() != synced.len();
        *synced = now;
        if entries_changed {
            sync_path(dir)?;
        }
        Ok(())
    }
}

/// `fsync`s one file or directory. A file that sled removed meanwhile needs
/// no sync.
pub(super) fn sync_path(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(file) => file.sync_all(),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `fsync`s the directory that holds `path`, making its creation or
/// renaming durable.
pub(super) fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => sync_path(parent),
        _ => sync_path(Path::new(".")),
    }
}

/// A bound above every `batch_seq` the buffer has issued, kept in a small
/// checksummed file beside sled's.
///
/// The counter itself lives in sled, moved together with the batches in one
/// transaction. This file covers the cases where sled's copy is gone: the
/// buffer was corrupt and set aside (the fresh buffer continues above the
/// old floor instead of starting again at the cloud's already-seen
/// numbers, which it would drop as duplicates), or sled silently lost the
/// end of its log. It is written ahead of use, [`SEQ_FLOOR_STEP`] numbers at
/// a time, so it costs one extra `fsync` per that many batches.
pub(super) struct SeqFloor;

/// How far ahead of the counter the floor file is moved each time.
pub(super) const SEQ_FLOOR_STEP: u64 = 1024;

impl SeqFloor {
    /// The floor stored in `dir`, if there is a readable one.
    pub(super) fn read(dir: &Path) -> io::Result<Option<u64>> {
        let bytes = match fs::read(dir.join(SEQ_FLOOR_FILE)) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        if bytes.len() != 12 {
            return Ok(None);
        }
        let (value, crc) = bytes.split_at(8);
        if crc32fast::hash(value).to_le_bytes() != crc {
            return Ok(None);
        }
        let mut be = [0; 8];
        be.copy_from_slice(value);
        Ok(Some(u64::from_be_bytes(be)))
    }

    /// Durably replaces the floor in `dir` with `floor`: temporary file,
    /// `fsync`, rename, `fsync` of the directory.
    pub(super) fn write(dir: &Path, floor: u64) -> io::Result<()> {
        let tmp = dir.join(format!("{SEQ_FLOOR_FILE}.tmp"));
        let mut file = File::create(&tmp)?;
        let value = floor.to_be_bytes();
        file.write_all(&value)?;
        file.write_all(&crc32fast::hash(&value).to_le_bytes())?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, dir.join(SEQ_FLOOR_FILE))?;
        sync_path(dir)
    }
}

/// Renames the buffer directory `dir` to `<dir>.corrupt-<unix_ms>` (with a
/// `-N` suffix if that exists) and makes the rename durable.
pub(super) fn move_aside(dir: &Path, unix_ms: i64) -> io::Result<PathBuf> {
    for attempt in 0u32.. {
        let mut name = dir.as_os_str().to_owned();
        name.push(format!(".corrupt-{unix_ms}"));
        if attempt > 0 {
            name.push(format!("-{attempt}"));
        }
        let target = PathBuf::from(name);
        if target.exists() {
            continue;
        }
        fs::rename(dir, &target)?;
        sync_parent(dir)?;
        return Ok(target);
    }
    Err(io::Error::other("no free name to move the buffer aside to"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_round_trips_and_a_damaged_one_reads_as_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(SeqFloor::read(dir.path()).unwrap(), None);
        SeqFloor::write(dir.path(), 1 << 40).unwrap();
        assert_eq!(SeqFloor::read(dir.path()).unwrap(), Some(1 << 40));
        SeqFloor::write(dir.path(), 7).unwrap();
        assert_eq!(SeqFloor::read(dir.path()).unwrap(), Some(7));
        let path = dir.path().join(SEQ_FLOOR_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[3] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(SeqFloor::read(dir.path()).unwrap(), None);
        fs::write(&path, b"short").unwrap();
        assert_eq!(SeqFloor::read(dir.path()).unwrap(), None);
    }

    #[test]
    fn moving_aside_never_overwrites_an_earlier_copy() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("buffer");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("db"), b"first").unwrap();
        let first = move_aside(&dir, 1234).unwrap();
        assert_eq!(first, root.path().join("buffer.corrupt-1234"));
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("db"), b"second").unwrap();
        let second = move_aside(&dir, 1234).unwrap();
        assert_eq!(second, root.path().join("buffer.corrupt-1234-1"));
        assert_eq!(fs::read(first.join("db")).unwrap(), b"first");
        assert_eq!(fs::read(second.join("db")).unwrap(), b"second");
        assert!(!dir.exists());
    }

    #[test]
    fn syncs_what_changed_and_forgets_what_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        fs::create_dir(&blobs).unwrap();
        fs::write(dir.path().join("db"), b"x").unwrap();
        fs::write(blobs.join("1"), b"blob").unwrap();
        let mut sync = DirSync::default();
        sync.sync(dir.path()).unwrap();
        let names = |sync: &DirSync, d: &Path| {
            let mut names: Vec<_> = sync.dirs[d].keys().cloned().collect();
            names.sort();
            names
        };
        assert_eq!(names(&sync, &blobs), [OsString::from("1")]);
        assert_eq!(names(&sync, dir.path()), [OsString::from("db")]);

        fs::write(blobs.join("2"), b"blob 2").unwrap();
        fs::remove_file(blobs.join("1")).unwrap();
        fs::write(dir.path().join("db"), b"longer").unwrap();
        sync.sync(dir.path()).unwrap();
        assert_eq!(names(&sync, &blobs), [OsString::from("2")]);
        assert_eq!(sync.dirs[dir.path()][&OsString::from("db")].len, 6);
    }
}
