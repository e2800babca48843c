//! Exit codes: one per way a run can end, so scripts can tell them apart.

use std::process::ExitCode;

use crate::proto::client::ClientError;
use crate::suite::SuiteError;
use crate::tcp::TcpError;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Verified / done.
    Ok = 0,
    /// A local error: a socket, a file, the runtime.
    Failure = 1,
    /// Bad command-line arguments (clap's own code).
    Usage = 2,
    /// The values did not add up to the server's checksum.
    ChecksumMismatch = 3,
    /// The server never answered, or went silent.
    NoAnswer = 4,
    /// The server no longer knows the session.
    SessionExpired = 5,
    /// The server is at its session limit.
    ServerBusy = 6,
    /// The server refused the request.
    BadRequest = 7,
    /// A simulation suite's expectation was not met.
    ExpectationFailed = 8,
    /// The server's session store (Redis) did not answer at start.
    StoreUnavailable = 9,
    /// Stopped by Ctrl-C or SIGTERM before the end (128 + SIGINT, as
    /// shells report an interrupted command).
    Interrupted = 130,
}

impl Exit {
    /// The code for a failed transfer.
    pub fn for_error(e: &ClientError) -> Self {
        match e {
            ClientError::ChecksumMismatch { .. } => Exit::ChecksumMismatch,
            ClientError::NoAnswer(_) | ClientError::Timeout(_) => Exit::NoAnswer,
            ClientError::SessionExpired => Exit::SessionExpired,
            ClientError::ServerBusy => Exit::ServerBusy,
            ClientError::BadRequest(_) => Exit::BadRequest,
        }
    }

    /// The code for a failed TCP comparison transfer, matching the UDP
    /// client's: an unresolvable name is a usage error, a refused
    /// connection or a timeout is "no answer", a cut transfer is "went
    /// silent", a wrong checksum is a checksum mismatch.
    pub fn for_tcp_error(e: &TcpError) -> Self {
        match e {
            TcpError::Resolve { .. } => Exit::Usage,
            TcpError::Connect { .. } | TcpError::Timeout { .. } => Exit::NoAnswer,
            TcpError::Unverified { .. } | TcpError::TrailingBytes(_) => Exit::ChecksumMismatch,
            TcpError::Io { .. } | TcpError::Truncated { .. } => Exit::NoAnswer,
        }
    }

    /// The code for a suite that could not run: a bad option or suite file
    /// is a usage error, anything else a local failure.
    pub fn for_suite_error(e: &SuiteError) -> Self {
        match e {
            SuiteError::Usage(_) | SuiteError::Invalid { .. } | SuiteError::Read { .. } => {
                Exit::Usage
            }
            _ => Exit::Failure,
        }
    }

    /// As a process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }
}
