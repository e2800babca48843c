//! `risp-udp keygen` and `risp-udp pubkey`: a server's static key (for
//! the encryption of issue 21; the wire does not use it yet).

use std::io::Write;
use std::path::PathBuf;

use rand::rngs::OsRng;

use crate::net::keyfile::{self, KeyFileError};
use crate::proto::crypto::ServerKey;

/// Arguments of `risp-udp keygen`.
#[derive(Debug, Clone, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the new key (created with mode 0600).
    #[arg(long, short = 'o', value_name = "PATH", default_value = "risp-udp.key")]
    pub output: PathBuf,
    /// Replace the file if it exists (the old key is lost).
    #[arg(long)]
    pub force: bool,
}

/// Arguments of `risp-udp pubkey`.
#[derive(Debug, Clone, clap::Args)]
pub struct PubkeyArgs {
    /// The key file to read.
    #[arg(long, value_name = "PATH", env = "RISP_KEY_FILE")]
    pub key_file: PathBuf,
}

/// Why a key command failed.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    /// Reading or writing the key file.
    #[error("{0}")]
    KeyFile(KeyFileError),
    /// `keygen` without `--force` where a file already is.
    #[error("{} already exists: not replacing a key (pass --force to replace it)", .0.display())]
    Exists(PathBuf),
    /// Writing the output.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<KeyFileError> for KeysError {
    fn from(e: KeyFileError) -> Self {
        Self::KeyFile(e)
    }
}

/// Writes a new key to `--output` (refusing to replace a file without
/// `--force`), says so on stderr, and prints its public key on `out`.
pub fn run_keygen(args: &KeygenArgs, out: &mut impl Write) -> Result<(), KeysError> {
    let key = ServerKey::generate(&mut OsRng);
    keyfile::save(&args.output, &key, args.force).map_err(|e| match e {
        KeyFileError::Exists { path } => KeysError::Exists(path),
        other => KeysError::KeyFile(other),
    })?;
    eprintln!(
        "wrote a new server key to {} (mode 0600); its public key:",
        args.output.display()
    );
    writeln!(out, "{}", key.public())?;
    Ok(())
}

/// Prints the public key of the key in `--key-file` on `out`.
pub fn run_pubkey(args: &PubkeyArgs, out: &mut impl Write) -> Result<(), KeysError> {
    let key = keyfile::load(&args.key_file)?;
    writeln!(out, "{}", key.public())?;
    Ok(())
}
