//! The bottom floor: the cloud's domain types and its one clock. Nothing
//! here does I/O or imports another module of the crate.

pub mod alerts;
pub mod clock;
pub mod projects;
pub mod setting;
