//! Points in time and durations as OpenADR writes them: RFC 3339 date-times
//! and ISO 8601 durations in JSON, integer milliseconds in postcard.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// A UTC instant with millisecond resolution.
///
/// JSON: RFC 3339 (`2026-11-21T12:00:00Z`; a date alone or a date-time
/// without offset is read as UTC). Postcard: milliseconds since the Unix
/// epoch. OpenADR's `0001-01-01` start means "now", see [`Timestamp::is_now`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Milliseconds from the Unix epoch to 0001-01-01T00:00:00Z.
const YEAR_ONE_MS: i64 = -62_135_596_800_000;
/// Milliseconds from the Unix epoch to 9999-12-31T23:59:59.999Z.
const YEAR_9999_END_MS: i64 = 253_402_300_799_999;

/// A time or duration that is malformed or out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TimeError(String);

impl Timestamp {
    /// OpenADR's "now" sentinel, 0001-01-01T00:00:00Z.
    pub const NOW_SENTINEL: Self = Self(YEAR_ONE_MS);

    /// From milliseconds since the Unix epoch (years 1 to 9999).
    pub fn from_unix_ms(ms: i64) -> Result<Self, TimeError> {
        if (YEAR_ONE_MS..=YEAR_9999_END_MS).contains(&ms) {
            Ok(Self(ms))
        } else {
            Err(TimeError(format!(
                "timestamp {ms} ms is outside years 1 to 9999"
            )))
        }
    }

    /// Milliseconds since the Unix epoch.
    pub const fn unix_ms(self) -> i64 {
        self.0
    }

    /// True for OpenADR's `0001-01-01` start, which means "when received".
    pub const fn is_now(self) -> bool {
        self.0 == YEAR_ONE_MS
    }

    /// This instant plus a duration; `None` if the duration is infinite or
    /// the sum leaves years 1 to 9999.
    pub fn checked_add(self, duration: IsoDuration) -> Option<Self> {
        let ms = i64::try_from(duration.millis()?).ok()?;
        Self::from_unix_ms(self.0.checked_add(ms)?).ok()
    }

    fn to_datetime(self) -> OffsetDateTime {
        // The range is checked on construction, and every instant in years
        // 1..=9999 is representable by `time`.
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.to_datetime();
        let millis = self.0.rem_euclid(1000);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            dt.year(),
            u8::from(dt.month()),
            dt.day(),
            dt.hour(),
            dt.minute(),
            dt.second()
        )?;
        if millis != 0 {
            write!(f, ".{millis:03}")?;
        }
        f.write_str("Z")
    }
}

impl FromStr for Timestamp {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            TimeError(format!(
                "{s:?} is not an RFC 3339 date-time (e.g. 2026-11-21T12:00:00Z)"
            ))
        };
        let dt = if let Ok(dt) = OffsetDateTime::parse(s, &Rfc3339) {
            dt
        } else if let Ok(dt) = PrimitiveDateTime::parse(
            s,
            format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]"
            ),
        ) {
            dt.assume_utc()
        } else if let Ok(date) = Date::parse(s, format_description!("[year]-[month]-[day]")) {
            date.midnight().assume_utc()
        } else {
            return Err(bad());
        };
        let ms = dt.unix_timestamp_nanos().div_euclid(1_000_000);
        Self::from_unix_ms(i64::try_from(ms).map_err(|_| bad())?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            Self::from_unix_ms(i64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
        }
    }
}

/// A non-negative duration with millisecond resolution, or infinity.
///
/// JSON: ISO 8601 as OpenADR uses it (`PT1H30M`, `P1DT2H`, `PT0.5S`, `P2W`;
/// `P9999Y` means infinity). Calendar years and months other than `P9999Y`
/// have no fixed length and are refused. Postcard: milliseconds, with
/// `u64::MAX` for infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoDuration(u64);

impl IsoDuration {
    /// OpenADR's `P9999Y`: no end.
    pub const INFINITE: Self = Self(u64::MAX);
    /// `PT0S`.
    pub const ZERO: Self = Self(0);

    /// A finite duration in milliseconds (`u64::MAX` is infinity).
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// Whole seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(secs.saturating_mul(1000))
    }

    /// Milliseconds, or `None` for infinity.
    pub const fn millis(self) -> Option<u64> {
        if self.0 == u64::MAX {
            None
        } else {
            Some(self.0)
        }
    }

    /// True for `P9999Y`.
    pub const fn is_infinite(self) -> bool {
        self.0 == u64::MAX
    }
}

impl fmt::Display for IsoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(ms) = self.millis() else {
            return f.write_str("P9999Y");
        };
        let (days, rest) = (ms / 86_400_000, ms % 86_400_000);
        let (hours, rest) = (rest / 3_600_000, rest % 3_600_000);
        let (minutes, rest) = (rest / 60_000, rest % 60_000);
        let (secs, millis) = (rest / 1000, rest % 1000);
        f.write_str("P")?;
        if days > 0 {
            write!(f, "{days}D")?;
        }
        if hours + minutes + secs + millis == 0 {
            return if days == 0 {
                f.write_str("T0S")
            } else {
                Ok(())
            };
        }
        f.write_str("T")?;
        if hours > 0 {
            write!(f, "{hours}H")?;
        }
        if minutes > 0 {
            write!(f, "{minutes}M")?;
        }
        match (secs, millis) {
            (0, 0) => Ok(()),
            (s, 0) => write!(f, "{s}S"),
            (s, m) => write!(f, "{s}.{m:03}S"),
        }
    }
}

impl FromStr for IsoDuration {
    type Err = TimeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            TimeError(format!(
                "{s:?} is not an ISO 8601 duration (e.g. PT1H30M): {why}"
            ))
        };
        if s == "P9999Y" {
            return Ok(Self::INFINITE);
        }
        if s.starts_with('-') {
            return Err(bad("negative durations are not allowed"));
        }
        let body = s
            .strip_prefix('P')
            .ok_or_else(|| bad("must start with P"))?;
        if body.is_empty() || body == "T" {
            return Err(bad("no components"));
        }
        let mut total: u64 = 0;
        let mut in_time = false;
        let mut number = String::new();
        let mut last_rank = 0u8;
        for c in body.chars() {
            if c == 'T' {
                if in_time || !number.is_empty() {
                    return Err(bad("misplaced T"));
                }
                in_time = true;
                continue;
            }
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            if number.is_empty() {
                return Err(bad("a unit without a number"));
            }
            let (rank, unit_ms) = match (in_time, c) {
                (false, 'Y' | 'M') => {
                    return Err(bad(
                        "calendar years and months have no fixed length; use days",
                    ));
                }
                (false, 'W') => (1, 604_800_000),
                (false, 'D') => (2, 86_400_000),
                (true, 'H') => (3, 3_600_000),
                (true, 'M') => (4, 60_000),
                (true, 'S') => (5, 1000),
                _ => return Err(bad(&format!("unexpected {c:?}"))),
            };
            if rank <= last_rank {
                return Err(bad("components out of order or repeated"));
            }
            last_rank = rank;
            let ms = if let Some((whole, frac)) = number.split_once('.') {
                if c != 'S' || whole.is_empty() || frac.is_empty() || frac.len() > 3 {
                    return Err(bad("only seconds may have a fraction, to milliseconds"));
                }
                let whole: u64 = whole.parse().map_err(|_| bad("number too large"))?;
                let frac: u64 = format!("{frac:0<3}")
                    .parse()
                    .map_err(|_| bad("bad fraction"))?;
                whole.checked_mul(1000).and_then(|w| w.checked_add(frac))
            } else {
                number
                    .parse::<u64>()
                    .map_err(|_| bad("number too large"))?
                    .checked_mul(unit_ms)
            };
            total = ms
                .and_then(|ms| total.checked_add(ms))
                .filter(|&t| t < u64::MAX)
                .ok_or_else(|| bad("too long"))?;
            number.clear();
        }
        if !number.is_empty() {
            return Err(bad("a number without a unit"));
        }
        if in_time && last_rank < 3 {
            return Err(bad("T without hours, minutes or seconds"));
        }
        Ok(Self(total))
    }
}

impl Serialize for IsoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for IsoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            u64::deserialize(deserializer).map(Self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_and_print() {
        let t: Timestamp = "2026-11-21T12:00:00Z".parse().unwrap();
        assert_eq!(t.unix_ms(), 1_795_262_400_000);
        assert_eq!(t.to_string(), "2026-11-21T12:00:00Z");
        let t: Timestamp = "2026-11-21T13:00:00.250+01:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-21T12:00:00.250Z");
        let t: Timestamp = "0001-01-01".parse().unwrap();
        assert!(t.is_now());
        assert_eq!(t.to_string(), "0001-01-01T00:00:00Z");
        assert!("0001-01-01T00:00:00".parse::<Timestamp>().unwrap().is_now());
        assert!("yesterday".parse::<Timestamp>().is_err());
        assert!(Timestamp::from_unix_ms(i64::MAX).is_err());
        let before_epoch = Timestamp::from_unix_ms(-1).unwrap();
        assert_eq!(before_epoch.to_string(), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            before_epoch.to_string().parse::<Timestamp>(),
            Ok(before_epoch)
        );
    }

    #[test]
    fn durations_parse_and_print() {
        for (text, ms) in [
            ("PT1H", 3_600_000),
            ("PT1H30M", 5_400_000),
            ("P1DT2H", 93_600_000),
            ("PT0.5S", 500),
            ("PT0S", 0),
            ("P2W", 1_209_600_000),
            ("PT90M", 5_400_000),
        ] {
            assert_eq!(text.parse::<IsoDuration>().map(|d| d.0), Ok(ms), "{text}");
        }
        assert_eq!("P9999Y".parse::<IsoDuration>(), Ok(IsoDuration::INFINITE));
        for ms in [0, 500, 1000, 61_000, 3_600_000, 86_400_000, 93_601_001] {
            let d = IsoDuration(ms);
            assert_eq!(d.to_string().parse::<IsoDuration>(), Ok(d), "{d}");
        }
        assert_eq!(IsoDuration(93_601_001).to_string(), "P1DT2H1.001S");
        assert_eq!(IsoDuration::INFINITE.to_string(), "P9999Y");
        for bad in [
            "",
            "P",
            "PT",
            "1H",
            "PT1",
            "P1M",
            "P1Y",
            "-PT1H",
            "PT1.5M",
            "PTH",
            "PT1M1H",
            "PT1S1S",
            "P1DT",
            "PT0.0001S",
        ] {
            assert!(bad.parse::<IsoDuration>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn checked_add() {
        let t = Timestamp::from_unix_ms(1000).unwrap();
        assert_eq!(
            t.checked_add(IsoDuration::from_secs(2))
                .map(Timestamp::unix_ms),
            Some(3000)
        );
        assert_eq!(t.checked_add(IsoDuration::INFINITE), None);
    }
}
