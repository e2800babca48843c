//! Ctrl-C and SIGTERM, for the commands that stop cleanly on them.

use std::future::Future;

/// Completes on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
///
/// On Unix both handlers are installed before this returns (not when the
/// future is first polled), so a signal sent right after a "ready" line
/// the caller prints next is not lost. A handler that cannot be installed
/// is simply not waited for. Must be called inside a tokio runtime.
pub fn termination() -> impl Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).ok();
        let mut terminate = signal(SignalKind::terminate()).ok();
        async move {
            let interrupt = async {
                match interrupt.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            let terminate = async {
                match terminate.as_mut() {
                    Some(s) => s.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = interrupt => {}
                _ = terminate => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
