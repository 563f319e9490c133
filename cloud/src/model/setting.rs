//! Bounded integer settings, read the same way by every component's
//! configuration (serde `deserialize_with`) and by the `GRIDLINK_*`
//! variables (`crate::config`).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// An integer outside a setting's range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is out of range: expected {min} to {max}")]
pub struct OutOfRange {
    /// The value.
    pub value: i64,
    /// The smallest value accepted.
    pub min: u64,
    /// The largest value accepted.
    pub max: u64,
}

/// `value` as a `T` if it lies in `min..=max`.
pub fn in_range<T: TryFrom<u64>>(value: i64, min: u64, max: u64) -> Result<T, OutOfRange> {
    u64::try_from(value)
        .ok()
        .filter(|v| (min..=max).contains(v))
        .and_then(|v| T::try_from(v).ok())
        .ok_or(OutOfRange { value, min, max })
}

/// An integer setting in `MIN..=MAX` (serde `deserialize_with`).
pub fn bounded<'de, D, T, const MIN: u64, const MAX: u64>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<u64>,
{
    let value = i64::deserialize(deserializer)?;
    in_range(value, MIN, MAX).map_err(D::Error::custom)
}
