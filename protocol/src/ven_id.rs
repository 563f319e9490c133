//! The VEN identifier: AWS IoT thing name, MQTT client id and certificate CN.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest VEN id AWS IoT accepts as a thing name.
pub const MAX_VEN_ID_LEN: usize = 128;

/// A VEN identifier following AWS IoT thing-name rules: 1 to 128 characters
/// of `[A-Za-z0-9:_-]`.
///
/// The same string is the AWS IoT thing name, the MQTT client id, the CN of
/// the VEN's client certificate and the last segment of its topics, so it can
/// never contain `/`, `+` or `#`.
///
/// ```
/// use gridlink_protocol::VenId;
/// let ven: VenId = "site-42:gw_1".parse().unwrap();
/// assert_eq!(ven.as_str(), "site-42:gw_1");
/// assert!(VenId::new("a/b").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct VenId(String);

/// Why a string is not a valid [`VenId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VenIdError {
    /// The id is the empty string.
    #[error("ven id is empty")]
    Empty,
    /// The id is longer than [`MAX_VEN_ID_LEN`] bytes.
    #[error("ven id is {len} characters long; at most {MAX_VEN_ID_LEN} are allowed")]
    TooLong {
        /// Length of the rejected id in bytes.
        len: usize,
    },
    /// The id contains a character outside `[A-Za-z0-9:_-]`.
    #[error(
        "ven id {id:?} contains {ch:?} at position {position}; only A-Z a-z 0-9 : _ - are allowed"
    )]
    InvalidChar {
        /// The rejected id (truncated to 64 characters).
        id: String,
        /// The first offending character.
        ch: char,
        /// Its character position.
        position: usize,
    },
}

impl VenId {
    /// Checks `id` against the thing-name rules.
    pub fn new(id: impl Into<String>) -> Result<Self, VenIdError> {
        let id = id.into();
        validate(&id)?;
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(id: &str) -> Result<(), VenIdError> {
    if id.is_empty() {
        return Err(VenIdError::Empty);
    }
    if let Some((position, ch)) = id
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, ':' | '_' | '-')))
    {
        return Err(VenIdError::InvalidChar {
            id: id.chars().take(64).collect(),
            ch,
            position,
        });
    }
    // Only ASCII remains, so bytes == characters.
    if id.len() > MAX_VEN_ID_LEN {
        return Err(VenIdError::TooLong { len: id.len() });
    }
    Ok(())
}

impl TryFrom<String> for VenId {
    type Error = VenIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<VenId> for String {
    fn from(value: VenId) -> Self {
        value.0
    }
}

impl FromStr for VenId {
    type Err = VenIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for VenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VenId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_thing_name_alphabet() {
        for ok in ["a", "ven-1", "site_7:gw-2", "ABCxyz019", &"x".repeat(128)] {
            assert_eq!(VenId::new(ok).map(|v| v.0), Ok(ok.to_string()));
        }
    }

    #[test]
    fn rejects_with_reason() {
        assert_eq!(VenId::new(""), Err(VenIdError::Empty));
        assert_eq!(
            VenId::new("x".repeat(129)),
            Err(VenIdError::TooLong { len: 129 })
        );
        let err = VenId::new("ven/1").unwrap_err();
        assert_eq!(
            err,
            VenIdError::InvalidChar {
                id: "ven/1".into(),
                ch: '/',
                position: 3
            }
        );
        for bad in ["ven+1", "ven#", "ven 1", "vén", "a.b"] {
            assert!(VenId::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn serde_validates() {
        let v: VenId = serde_json::from_str("\"ven-1\"").unwrap();
        assert_eq!(v.as_str(), "ven-1");
        let err = serde_json::from_str::<VenId>("\"ven/1\"").unwrap_err();
        assert!(err.to_string().contains("'/'"), "{err}");
    }
}
