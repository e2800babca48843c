//! Known servers: the keys a client trusts, one `HOST:PORT KEY` line per
//! server, as ssh's `known_hosts`.
//!
//! A client that pins no key learns a server's key on first contact and
//! can remember it here (trust on first use); from then on a server
//! answering with another key is a [`KnownServersError::Mismatch`] that
//! names both keys and the line to remove if the change was intended.
//! Blank lines and lines starting with `#` are kept as they are when the
//! file is saved.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::proto::crypto::PublicKey;

/// Why the known-servers file could not be used, or a server's key is
/// not the one remembered.
#[derive(Debug, thiserror::Error)]
pub enum KnownServersError {
    /// The file exists but could not be read.
    #[error("cannot read known-servers file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// A line is not `HOST:PORT KEY`.
    #[error("{}:{line}: {reason} (each line is `HOST:PORT KEY`)", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file could not be written.
    #[error("cannot write known-servers file {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: io::Error,
    },
    /// The server offered another key than the one remembered.
    #[error(
        "the key of {server} has changed: {}:{line} remembers {remembered}, the server offers {offered}. \
         Someone may be intercepting the connection; if the server's key was replaced on purpose, remove line {line} of {}",
        path.display(),
        path.display()
    )]
    Mismatch {
        /// The server, `HOST:PORT`.
        server: String,
        /// The file.
        path: PathBuf,
        /// The line that remembers it, from 1.
        line: usize,
        /// The key remembered.
        remembered: PublicKey,
        /// The key offered.
        offered: PublicKey,
    },
    /// A server name that is not `HOST:PORT`.
    #[error("`{0}` is not HOST:PORT")]
    BadServer(String),
}

/// What the file says of a server's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust {
    /// The key remembered for the server.
    Known,
    /// The server is not in the file.
    Unknown,
}

/// One line of the file.
#[derive(Debug, Clone)]
enum Line {
    /// A server and its key.
    Entry { server: String, key: PublicKey },
    /// A comment or a blank line, kept as written.
    Other(String),
}

/// The file's contents, in memory.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
    lines: Vec<Line>,
}

/// A server name: `HOST:PORT`, with a port number and a host (IPv6
/// addresses in brackets, as in `[::1]:9000`).
fn check_server(server: &str) -> Result<(), String> {
    let (host, port) = server
        .rsplit_once(':')
        .ok_or_else(|| format!("`{server}` has no port"))?;
    if host.is_empty() {
        return Err(format!("`{server}` has no host"));
    }
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(format!("`{server}`: an IPv6 host is written in brackets"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("`{port}` in `{server}` is not a port number"))?;
    Ok(())
}

impl KnownServers {
    /// Reads `path`; a file that does not exist is an empty store (it is
    /// created by the first [`save`](Self::save)).
    pub fn load(path: &Path) -> Result<Self, KnownServersError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(KnownServersError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let mut lines = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                lines.push(Line::Other(raw.to_string()));
                continue;
            }
            let malformed = |reason: String| KnownServersError::Malformed {
                path: path.to_path_buf(),
                line: i + 1,
                reason,
            };
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            let [server, key] = fields[..] else {
                return Err(malformed(format!("{} fields", fields.len())));
            };
            check_server(server).map_err(malformed)?;
            let key = key
                .parse()
                .map_err(|e| malformed(format!("bad key: {e}")))?;
            lines.push(Line::Entry {
                server: server.to_string(),
                key,
            });
        }
        Ok(Self {
            path: path.to_path_buf(),
            lines,
        })
    }

    /// The file this store reads and saves.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first line naming `server`: its number (from 1) and key.
    fn find(&self, server: &str) -> Option<(usize, PublicKey)> {
        self.lines.iter().enumerate().find_map(|(i, l)| match l {
            Line::Entry { server: s, key } if s == server => Some((i + 1, *key)),
            _ => None,
        })
    }

    /// The key remembered for `server` (`HOST:PORT`).
    pub fn lookup(&self, server: &str) -> Option<PublicKey> {
        self.find(server).map(|(_, k)| k)
    }

    /// Whether `offered` is the key remembered for `server`: known,
    /// unknown, or a mismatch.
    pub fn check(&self, server: &str, offered: &PublicKey) -> Result<Trust, KnownServersError> {
        match self.find(server) {
            None => Ok(Trust::Unknown),
            Some((_, key)) if key == *offered => Ok(Trust::Known),
            Some((line, remembered)) => Err(KnownServersError::Mismatch {
                server: server.to_string(),
                path: self.path.clone(),
                line,
                remembered,
                offered: *offered,
            }),
        }
    }

    /// Remembers `key` for `server` (in memory: [`save`](Self::save)
    /// writes it). Remembering the key already there does nothing; another
    /// key for a known server is a mismatch (forget it first).
    pub fn remember(&mut self, server: &str, key: PublicKey) -> Result<(), KnownServersError> {
        check_server(server).map_err(|_| KnownServersError::BadServer(server.to_string()))?;
        if self.check(server, &key)? == Trust::Unknown {
            self.lines.push(Line::Entry {
                server: server.to_string(),
                key,
            });
        }
        Ok(())
    }

    /// Forgets every key remembered for `server`; returns whether there
    /// was one.
    pub fn forget(&mut self, server: &str) -> bool {
        let before = self.lines.len();
        self.lines
            .retain(|l| !matches!(l, Line::Entry { server: s, .. } if s == server));
        self.lines.len() != before
    }

    /// Writes the store back to its file: a new file renamed over the old
    /// one, comments and blank lines kept.
    pub fn save(&self) -> Result<(), KnownServersError> {
        let write_error = |source| KnownServersError::Write {
            path: self.path.clone(),
            source,
        };
        let mut text = String::new();
        for line in &self.lines {
            match line {
                Line::Entry { server, key } => text.push_str(&format!("{server} {key}\n")),
                Line::Other(raw) => {
                    text.push_str(raw);
                    text.push('\n');
                }
            }
        }
        let mut staging = self.path.as_os_str().to_owned();
        staging.push(".new");
        let staging = PathBuf::from(staging);
        let written = fs::File::create(&staging)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| fs::rename(&staging, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&staging);
            return Err(write_error(e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PublicKey {
        PublicKey::from_bytes([b; 32])
    }

    #[test]
    fn remembered_keys_survive_a_save_and_a_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let mut store = KnownServers::load(&path).unwrap();
        assert_eq!(store.lookup("example.net:9000"), None);
        assert_eq!(
            store.check("example.net:9000", &key(1)).unwrap(),
            Trust::Unknown
        );
        store.remember("example.net:9000", key(1)).unwrap();
        store.remember("[::1]:9000", key(2)).unwrap();
        store.remember("example.net:9000", key(1)).unwrap();
        store.save().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("example.net:9000 {}\n[::1]:9000 {}\n", key(1), key(2))
        );
        let back = KnownServers::load(&path).unwrap();
        assert_eq!(back.lookup("example.net:9000"), Some(key(1)));
        assert_eq!(back.lookup("[::1]:9000"), Some(key(2)));
        assert_eq!(back.check("[::1]:9000", &key(2)).unwrap(), Trust::Known);
        assert_eq!(back.lookup("example.net:9001"), None);
    }

    #[test]
    fn another_key_for_a_known_server_is_a_mismatch_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known");
        fs::write(&path, format!("# mine\n\n127.0.0.1:9000 {}\n", key(1))).unwrap();
        let mut store = KnownServers::load(&path).unwrap();
        let err = store.check("127.0.0.1:9000", &key(2)).unwrap_err();
        let KnownServersError::Mismatch {
            line,
            remembered,
            offered,
            ..
        } = &err
        else {
            panic!("{err}");
        };
        assert_eq!((*line, *remembered, *offered), (3, key(1), key(2)));
        let text = err.to_string();
        for needle in [
            key(1).to_string(),
            key(2).to_string(),
            "127.0.0.1:9000".into(),
            "line 3".into(),
        ] {
            assert!(text.contains(&needle), "{needle} not in {text}");
        }
        assert!(matches!(
            store.remember("127.0.0.1:9000", key(2)),
            Err(KnownServersError::Mismatch { .. })
        ));
        assert!(store.forget("127.0.0.1:9000"));
        store.remember("127.0.0.1:9000", key(2)).unwrap();
        store.save().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("# mine\n\n127.0.0.1:9000 {}\n", key(2)),
            "comments and blank lines are kept"
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known");
        let cases = [
            (format!("host {}\n", key(1)), "has no port"),
            (format!("host:port {}\n", key(1)), "not a port number"),
            (format!(":9000 {}\n", key(1)), "has no host"),
            (format!("::1:9000 {}\n", key(1)), "in brackets"),
            ("host:1 notakey\n".to_string(), "bad key"),
            (format!("host:1 {} extra\n", key(1)), "3 fields"),
        ];
        for (text, reason) in cases {
            fs::write(&path, format!("# ok\n{text}")).unwrap();
            let err = KnownServers::load(&path).unwrap_err();
            let shown = err.to_string();
            assert!(
                matches!(err, KnownServersError::Malformed { line: 2, .. })
                    && shown.contains(reason),
                "{text:?}: {shown}"
            );
        }
        let mut store = KnownServers::load(&dir.path().join("none")).unwrap();
        assert!(matches!(
            store.remember("nohost", key(1)),
            Err(KnownServersError::BadServer(_))
        ));
    }
}
