//! Exit codes: one per way a run can end, so scripts can tell them apart.

use std::process::ExitCode;

use crate::net::server::ServerError;
use crate::net::stream::TransferError;
use crate::proto::client::ClientError;
use crate::suite::SuiteError;
use crate::tcp::TcpError;
use crate::transfer::TransferReport;

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
    /// The server proved another key than the pinned (or remembered)
    /// one, or answered in clear when a sealed session was asked for.
    ServerKeyMismatch = 10,
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
            ClientError::KeyMismatch { .. } | ClientError::NotEncrypted => Exit::ServerKeyMismatch,
        }
    }

    /// The code a run of transfers ends with (one client, a load, the
    /// demo): interrupted, else a local failure (every server refused is
    /// "no answer"), else 0 when every transfer verified, else the first
    /// failure's code.
    pub fn for_run(
        reports: &[TransferReport],
        interrupted: bool,
        local: Option<&TransferError>,
    ) -> Self {
        if interrupted {
            return Exit::Interrupted;
        }
        if let Some(e) = local {
            return Exit::for_transfer_error(e);
        }
        if reports.iter().all(TransferReport::verified) {
            return Exit::Ok;
        }
        reports
            .iter()
            .find_map(|r| r.error.as_ref())
            .map_or(Exit::Failure, Exit::for_error)
    }

    /// The code for a transfer that ended without a report: "no answer"
    /// when every server refused, else a local failure.
    pub fn for_transfer_error(e: &TransferError) -> Self {
        match e {
            TransferError::Refused { .. } => Exit::NoAnswer,
            TransferError::Failed(e) => Exit::for_error(e),
            TransferError::Aborted => Exit::Interrupted,
            TransferError::NoServer | TransferError::Io(_) | TransferError::Qlog(_) => {
                Exit::Failure
            }
        }
    }

    /// The code for a server that could not start or failed: a bad store
    /// URL, a short secret or an impairment the shim refuses is a usage
    /// error, a store that does not answer its own code, anything else a
    /// local failure.
    pub fn for_server_error(e: &ServerError) -> Self {
        match e {
            ServerError::StoreUrl(_)
            | ServerError::SecretTooShort { .. }
            | ServerError::Impairment(_) => Exit::Usage,
            ServerError::StoreUnreachable { .. } | ServerError::SharedSecret(_) => {
                Exit::StoreUnavailable
            }
            ServerError::SecretFile { .. }
            | ServerError::Bind { .. }
            | ServerError::Qlog(_)
            | ServerError::Socket(_) => Exit::Failure,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    fn report(verified: bool, error: Option<ClientError>) -> TransferReport {
        let mut r = TransferReport::new(Uuid::nil(), 10);
        if verified {
            r.delivered = 10;
            r.checksum = Some(1);
            r.finished_at = Some(std::time::Duration::ZERO);
        }
        r.error = error;
        r
    }

    #[test]
    fn one_cascade_decides_every_run() {
        let ok = report(true, None);
        let busy = report(false, Some(ClientError::ServerBusy));
        let expired = report(false, Some(ClientError::SessionExpired));
        let stopped = report(false, None);
        let refused = TransferError::Refused {
            servers: Vec::new(),
        };
        let io = TransferError::Io(Arc::new(std::io::Error::other("x")));
        assert_eq!(
            Exit::for_run(std::slice::from_ref(&ok), false, None),
            Exit::Ok
        );
        assert_eq!(Exit::for_run(&[], false, None), Exit::Ok);
        // Interrupted beats everything; then a local error; then the first
        // failure's code; an unverified run without one is a failure.
        assert_eq!(
            Exit::for_run(std::slice::from_ref(&busy), true, Some(&io)),
            Exit::Interrupted
        );
        assert_eq!(
            Exit::for_run(std::slice::from_ref(&ok), false, Some(&refused)),
            Exit::NoAnswer
        );
        assert_eq!(
            Exit::for_run(std::slice::from_ref(&ok), false, Some(&io)),
            Exit::Failure
        );
        assert_eq!(
            Exit::for_run(&[ok, expired, busy], false, None),
            Exit::SessionExpired
        );
        assert_eq!(Exit::for_run(&[stopped], false, None), Exit::Failure);
    }
}
