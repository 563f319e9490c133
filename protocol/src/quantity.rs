//! What a telemetry series measures: quantity, unit and phase.

use serde::{Deserialize, Serialize};

/// A measured electrical quantity. Each has one fixed unit.
///
/// The postcard encoding writes the variant index: never reorder, only
/// append (the golden vectors in `tests/golden` guard this).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantity {
    /// Active power in W; positive = import from the grid, negative = export.
    ActivePower,
    /// Reactive power in var.
    ReactivePower,
    /// Apparent power in VA.
    ApparentPower,
    /// RMS voltage in V (line to neutral, or line to line for `L1L2`...).
    Voltage,
    /// RMS current in A.
    Current,
    /// Grid frequency in Hz.
    Frequency,
    /// Power factor, dimensionless, -1 to 1.
    PowerFactor,
    /// Cumulative imported active energy in Wh (a counter that only grows).
    EnergyImport,
    /// Cumulative exported active energy in Wh (a counter that only grows).
    EnergyExport,
}

impl Quantity {
    /// Every quantity, in wire order.
    pub const ALL: [Self; 9] = [
        Self::ActivePower,
        Self::ReactivePower,
        Self::ApparentPower,
        Self::Voltage,
        Self::Current,
        Self::Frequency,
        Self::PowerFactor,
        Self::EnergyImport,
        Self::EnergyExport,
    ];

    /// The SI unit symbol (empty for the power factor).
    pub const fn unit(self) -> &'static str {
        match self {
            Self::ActivePower => "W",
            Self::ReactivePower => "var",
            Self::ApparentPower => "VA",
            Self::Voltage => "V",
            Self::Current => "A",
            Self::Frequency => "Hz",
            Self::PowerFactor => "",
            Self::EnergyImport | Self::EnergyExport => "Wh",
        }
    }

    /// The name used in JSON, configs and the API, e.g. `active_power`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::ActivePower => "active_power",
            Self::ReactivePower => "reactive_power",
            Self::ApparentPower => "apparent_power",
            Self::Voltage => "voltage",
            Self::Current => "current",
            Self::Frequency => "frequency",
            Self::PowerFactor => "power_factor",
            Self::EnergyImport => "energy_import",
            Self::EnergyExport => "energy_export",
        }
    }

    /// True for cumulative counters, which must never go backwards.
    pub const fn is_counter(self) -> bool {
        matches!(self, Self::EnergyImport | Self::EnergyExport)
    }
}

/// The phase or phase pair a series is measured on.
///
/// Wire order is fixed, as for [`Quantity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Phase {
    /// The whole meter (sum over phases, or a single-phase meter).
    #[serde(rename = "total")]
    Total,
    /// Phase 1 (to neutral).
    L1,
    /// Phase 2 (to neutral).
    L2,
    /// Phase 3 (to neutral).
    L3,
    /// The neutral conductor (current).
    N,
    /// Between phases 1 and 2 (line-to-line voltage).
    L1L2,
    /// Between phases 2 and 3.
    L2L3,
    /// Between phases 3 and 1.
    L3L1,
}

impl Phase {
    /// The name used in JSON, configs and the API, e.g. `total`, `L1L2`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Total => "total",
            Self::L1 => "L1",
            Self::L2 => "L2",
            Self::L3 => "L3",
            Self::N => "N",
            Self::L1L2 => "L1L2",
            Self::L2L3 => "L2L3",
            Self::L3L1 => "L3L1",
        }
    }

    /// Every phase, in wire order.
    pub const ALL: [Self; 8] = [
        Self::Total,
        Self::L1,
        Self::L2,
        Self::L3,
        Self::N,
        Self::L1L2,
        Self::L2L3,
        Self::L3L1,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_names_match_name() {
        for q in Quantity::ALL {
            assert_eq!(
                serde_json::to_string(&q).unwrap(),
                format!("\"{}\"", q.name())
            );
        }
        for p in Phase::ALL {
            assert_eq!(
                serde_json::to_string(&p).unwrap(),
                format!("\"{}\"", p.name())
            );
        }
        assert_eq!(serde_json::to_string(&Phase::Total).unwrap(), "\"total\"");
        assert_eq!(serde_json::to_string(&Phase::L2L3).unwrap(), "\"L2L3\"");
    }

    #[test]
    fn units() {
        assert_eq!(Quantity::ActivePower.unit(), "W");
        assert_eq!(Quantity::EnergyExport.unit(), "Wh");
        assert!(Quantity::EnergyImport.is_counter());
        assert!(!Quantity::Voltage.is_counter());
    }
}
