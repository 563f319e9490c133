//! Dashboard request timings (being written).

fn main() {}
