//! One decoded meter reading, as acquisition hands it to the buffer.

use std::sync::Arc;

use gridlink_protocol::{Phase, Quantity};

/// A reading on its way from a Modbus poll into the durable buffer.
///
/// The value is already quantized: it is `raw * 10^exponent` in the
/// quantity's unit, exactly as it will travel in a
/// [`gridlink_protocol::Series`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    /// The meter's (device's) name from the config.
    pub meter: Arc<str>,
    /// What was measured.
    pub quantity: Quantity,
    /// On which phase.
    pub phase: Phase,
    /// Decimal exponent of the resolution.
    pub exponent: i8,
    /// When the poll was scheduled, ms since the Unix epoch (UTC).
    pub ts_ms: i64,
    /// The scaled integer value.
    pub raw: i64,
}
