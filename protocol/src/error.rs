//! Validation errors shared by every payload type.

/// A payload that decoded (or is about to be encoded) but breaks a rule of
/// the protocol. Each variant says exactly which part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A telemetry batch with no series.
    #[error("batch has no series")]
    EmptyBatch,
    /// A series breaks a rule; `index` is its position in the batch.
    #[error("series {index}: {reason}")]
    Series {
        /// Position of the series in the batch.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A field of a non-telemetry payload breaks a rule.
    #[error("{field}: {reason}")]
    Field {
        /// Path of the field, e.g. `event.intervals[2].payloads[0]`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl ValidationError {
    /// Shorthand for [`ValidationError::Field`].
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Field {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
