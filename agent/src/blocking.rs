//! Blocking work (sled reads, writes and fsyncs) off the async workers:
//! the one way the agent's tasks wait on the disk.

/// Runs `work` on tokio's blocking pool and waits for it without holding
/// an async worker; a panic in it resumes in the caller.
pub async fn off_the_runtime<T, F>(work: F) -> T
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}
