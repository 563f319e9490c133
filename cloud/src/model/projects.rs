//! Energy projects' domain types: kinds, statuses, milestone quantities,
//! finance kinds, reporting periods and the rollup rows the store reads for
//! them. The computations are in `crate::projects`; the SQL in
//! `crate::store::projects`.

/// Milliseconds in an hour, the rollup bucket this module reads.
pub const HOUR_MS: i64 = 3_600_000;

/// A project's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProjectKind {
    /// A generation project (PV park, wind farm).
    Renewable,
    /// A flexibility portfolio (loads shed in DR events).
    Flexibility,
}

/// A project's life-cycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProjectStatus {
    /// Not built yet.
    Planned,
    /// Being built.
    Construction,
    /// In service.
    Operational,
    /// Out of service for good.
    Decommissioned,
}

/// Which running total a milestone watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MilestoneQuantity {
    /// Energy generated (exported).
    Generated,
    /// Energy consumed (imported).
    Consumed,
}

/// A name that is none of a type's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {name:?}; expected one of {expected}")]
pub struct UnknownName {
    /// The name given.
    pub name: String,
    /// The names there are, comma-separated.
    pub expected: String,
}

macro_rules! named {
    ($ty:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name in the API and the store.
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $name),+ }
            }

            /// The value named `name`; the error lists the names.
            pub fn from_name(name: &str) -> Result<Self, UnknownName> {
                Self::ALL.iter().copied().find(|v| v.as_str() == name).ok_or_else(|| {
                    let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    UnknownName {
                        name: name.to_string(),
                        expected: names.join(", "),
                    }
                })
            }
        }
    };
}

named!(ProjectKind { Renewable => "renewable", Flexibility => "flexibility" });
named!(ProjectStatus {
    Planned => "planned",
    Construction => "construction",
    Operational => "operational",
    Decommissioned => "decommissioned",
});
named!(MilestoneQuantity { Generated => "generated", Consumed => "consumed" });

/// A finance entry's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinanceKind {
    /// Money spent.
    Expense,
    /// Money earned (other than the computed DR revenue).
    Revenue,
}

named!(FinanceKind { Expense => "expense", Revenue => "revenue" });

/// A reporting period: UTC days or UTC calendar months.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    /// `[00:00, 24:00)` UTC.
    Day,
    /// From the 1st, 00:00 UTC, to the next month's.
    Month,
}

named!(Period { Day => "day", Month => "month" });

/// One stored series of a VEN (phase `total`) that energy may come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnergySeries {
    /// The series id.
    pub series_id: i64,
    /// The meter's name.
    pub meter: String,
    /// The quantity's code ([`crate::store::quantity_code`]): 0, 7 or 8.
    pub quantity: i16,
}

/// One 1-hour rollup row of a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HourRow {
    /// The series.
    pub series_id: i64,
    /// Bucket start, ms.
    pub bucket: i64,
    /// Readings.
    pub count: i64,
    /// Their sum.
    pub sum: f64,
    /// The smallest.
    pub min: f64,
    /// Time of the newest, ms.
    pub last_ts: i64,
    /// Value of the newest.
    pub last_value: f64,
}

/// One series' energy of one UTC day, computed by the store from the
/// 1-hour rollups with the same rules as [`add_series_energy`] (so a day
/// is the sum of its hours).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayRow {
    /// The series.
    pub series_id: i64,
    /// Day start, ms.
    pub day: i64,
    /// Counter increase, Wh (the sum of the hourly increases).
    pub rise: f64,
    /// Sum of the positive hourly means, Wh.
    pub positive_wh: f64,
    /// Sum of the negative hourly means as a positive number, Wh.
    pub negative_wh: f64,
    /// Newest reading of the day, ms.
    pub last_ts: i64,
}
