//! Key files: a server's static key on disk.
//!
//! A key file holds one line, the secret in its text form (44 base64
//! characters, as WireGuard's key files do). It is created with mode 0600
//! and, as ssh does with private keys, refused when its group or others
//! may read or write it. Replacing a key writes a new file beside it and
//! renames it over the old one, so a crash leaves the old key or the new
//! one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use rand::rngs::OsRng;

use crate::proto::crypto::{KeyTextError, ServerKey};

/// Longest key file read: a key and some whitespace.
const MAX_FILE_LEN: u64 = 1024;

/// Why a key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be opened or read.
    #[error("cannot read key file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// Group or others may read or write the file.
    #[error(
        "key file {} has permissions {mode:04o}, too open: a key must be readable by its owner only (chmod 600 {})",
        path.display(),
        path.display()
    )]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key.
    #[error("{} is not a key file: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Creating a key where a file already is.
    #[error("{} already exists: not replacing a key", path.display())]
    Exists {
        /// The file.
        path: PathBuf,
    },
    /// The file could not be written.
    #[error("cannot write key file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
}

/// Reads the key in `path`, refusing a file that group or others can
/// read or write.
pub fn load(path: &Path) -> Result<ServerKey, KeyFileError> {
    let read_error = |source| KeyFileError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(malformed(path, "not a regular file"));
    }
    check_mode(path, &meta)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(malformed(path, &format!("{} bytes long", meta.len())));
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_FILE_LEN)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| malformed(path, "not text"))?;
    let key = text.trim();
    if key.lines().count() > 1 {
        return Err(malformed(
            path,
            "more than one line (a key file holds one key, as `risp-udp keygen` writes it)",
        ));
    }
    key.parse()
        .map_err(|e: KeyTextError| malformed(path, &e.to_string()))
}

fn malformed(path: &Path, reason: &str) -> KeyFileError {
    KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &fs::Metadata) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_path: &Path, _meta: &fs::Metadata) -> Result<(), KeyFileError> {
    Ok(())
}

/// A new file only its owner can read and write (mode 0600), failing if
/// `path` exists.
fn create_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn write_key(file: &mut File, key: &ServerKey) -> io::Result<()> {
    let mut line = key.secret_text();
    line.push('\n');
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// Writes `key` to a new file at `path` (mode 0600). An existing file is
/// an error unless `replace`, in which case the key is written beside it
/// and renamed over it.
pub fn save(path: &Path, key: &ServerKey, replace: bool) -> Result<(), KeyFileError> {
    let write_error = |source| KeyFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    if !replace {
        let mut file = create_private(path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                KeyFileError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                write_error(e)
            }
        })?;
        return write_key(&mut file, key).map_err(write_error);
    }
    let mut staging = path.as_os_str().to_owned();
    staging.push(".new");
    let staging = PathBuf::from(staging);
    // A stale staging file from an interrupted run would make
    // `create_new` fail; it holds no key anyone uses.
    match fs::remove_file(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(write_error(e)),
    }
    let written = create_private(&staging)
        .and_then(|mut file| write_key(&mut file, key))
        .and_then(|()| fs::rename(&staging, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&staging);
        return Err(write_error(e));
    }
    Ok(())
}

/// The key in `path`, or a new one (from the operating system's
/// randomness) written there if there is no file. The flag says whether
/// the key was created.
pub fn load_or_create(path: &Path) -> Result<(ServerKey, bool), KeyFileError> {
    match load(path) {
        Err(KeyFileError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            let key = ServerKey::generate(&mut OsRng);
            match save(path, &key, false) {
                Ok(()) => Ok((key, true)),
                // Another process created it first: use its key.
                Err(KeyFileError::Exists { .. }) => load(path).map(|k| (k, false)),
                Err(e) => Err(e),
            }
        }
        other => other.map(|k| (k, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[cfg(unix)]
    fn chmod(path: &Path, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_created_key_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.key");
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{}\n", key.secret_text().as_str()));
        let (again, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public());
        assert_eq!(load(&path).unwrap().public(), key.public());
    }

    #[test]
    fn saving_over_a_key_needs_replace_and_keeps_the_file_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let first = ServerKey::generate(&mut OsRng);
        save(&path, &first, false).unwrap();
        let second = ServerKey::generate(&mut OsRng);
        let err = save(&path, &second, false).unwrap_err();
        assert!(matches!(err, KeyFileError::Exists { .. }), "{err}");
        assert_eq!(load(&path).unwrap().public(), first.public());
        #[cfg(unix)]
        chmod(&path, 0o644);
        save(&path, &second, true).unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600, "a replaced key is a new 0600 file");
        assert_eq!(load(&path).unwrap().public(), second.public());
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no staging file left");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        save(&path, &ServerKey::generate(&mut OsRng), false).unwrap();
        for m in [0o640, 0o604, 0o620, 0o602] {
            chmod(&path, m);
            let err = load(&path).unwrap_err();
            assert!(
                matches!(err, KeyFileError::TooOpen { mode, .. } if mode == m),
                "{err}"
            );
            assert!(err.to_string().contains(&format!("{m:04o}")), "{err}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        chmod(&path, 0o400);
        assert!(load(&path).is_ok(), "read-only for the owner is fine");
    }

    #[test]
    fn bad_files_say_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, content: &[u8]| {
            let path = dir.path().join(name);
            let mut f = create_private(&path).unwrap();
            f.write_all(content).unwrap();
            path
        };
        let short = write("short", b"abc\n");
        let err = load(&short).unwrap_err().to_string();
        assert!(
            err.contains("is not a key file") && err.contains("3 characters"),
            "{err}"
        );
        let key = ServerKey::generate(&mut OsRng);
        let two = write(
            "two",
            format!(
                "{}\n{}\n",
                key.secret_text().as_str(),
                key.secret_text().as_str()
            )
            .as_bytes(),
        );
        assert!(load(&two)
            .unwrap_err()
            .to_string()
            .contains("more than one line"));
        let binary = write("bin", &[0xff, 0xfe, 0x00]);
        assert!(load(&binary).unwrap_err().to_string().contains("not text"));
        let big = write("big", &[b'A'; 2000]);
        assert!(load(&big)
            .unwrap_err()
            .to_string()
            .contains("2000 bytes long"));
        let err = load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        let missing = dir.path().join("missing");
        let err = load(&missing).unwrap_err();
        assert!(matches!(err, KeyFileError::Read { .. }), "{err}");
        // Surrounding whitespace is fine.
        let spaced = write(
            "spaced",
            format!("  {}  \n\n", key.secret_text().as_str()).as_bytes(),
        );
        assert_eq!(load(&spaced).unwrap().public(), key.public());
    }
}
