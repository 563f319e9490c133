//! The cloud's one clock: wall time in milliseconds since the Unix epoch,
//! the unit of every timestamp the cloud stores, sends and compares.

/// Milliseconds since the Unix epoch, now (0 before 1970, `i64::MAX` past
/// the year 292,277,026).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
