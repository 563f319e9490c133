//! Deterministic noise: pure functions of (seed, stream, time), so two
//! simulators with one seed produce the same values at the same instant no
//! matter when, how often or in which order they are read.
//!
//! Every random quantity draws from its own *stream* (a 64-bit label made
//! of what it is and which meter, load or phase it belongs to). A value is
//! a hash of seed, stream and an index (a time bucket, a day number, ...);
//! smooth noise interpolates between the hashed values of neighbouring time
//! buckets.

/// The `SplitMix64` finaliser: a fast, well-mixing 64-bit permutation.
const fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash of `seed`, `stream` and `index`.
pub(crate) const fn hash(seed: u64, stream: Stream, index: u64) -> u64 {
    mix(mix(mix(seed) ^ stream.0) ^ index)
}

/// A uniform number in `[0, 1)` for `seed`, `stream` and `index`.
pub(crate) fn uniform(seed: u64, stream: Stream, index: u64) -> f64 {
    (hash(seed, stream, index) >> 11) as f64 / (1_u64 << 53) as f64
}

/// Smooth noise in `[-1, 1]`: random values at multiples of `period_ms`,
/// interpolated with a smoothstep in between.
pub(crate) fn smooth(seed: u64, stream: Stream, t_ms: u64, period_ms: u64) -> f64 {
    let bucket = t_ms / period_ms;
    let frac = (t_ms % period_ms) as f64 / period_ms as f64;
    let a = 2.0 * uniform(seed, stream, bucket) - 1.0;
    let b = 2.0 * uniform(seed, stream, bucket + 1) - 1.0;
    let s = frac * frac * (3.0 - 2.0 * frac);
    a + (b - a) * s
}

/// A label for one random quantity: what it is, of which entity, which channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stream(u64);

impl Stream {
    /// The stream of quantity `kind` of entity `id` (a unit or load number),
    /// channel `channel` (a phase, or one of several draws).
    pub(crate) const fn new(kind: StreamKind, id: u16, channel: u16) -> Self {
        Self(((kind as u64) << 32) | ((id as u64) << 16) | channel as u64)
    }
}

/// What a [`Stream`] draws for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// Fixed per-entity parameters (ratings, phase weights).
    Parameter = 1,
    /// Grid voltage per phase.
    Voltage,
    /// Grid frequency.
    Frequency,
    /// Fast power jitter.
    Jitter,
    /// Slow power drift.
    Drift,
    /// Load and heat-pump duty-cycle slots.
    Slot,
    /// PV cloud cover.
    Cloud,
    /// EV charging sessions.
    Session,
    /// Initial energy counters.
    Energy,
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the same inputs must give bit-identical draws"
)]
mod tests {
    use super::*;

    const S: Stream = Stream::new(StreamKind::Drift, 3, 1);

    #[test]
    fn same_inputs_same_value_different_inputs_differ() {
        assert_eq!(uniform(7, S, 42), uniform(7, S, 42));
        assert_ne!(uniform(7, S, 42), uniform(8, S, 42));
        assert_ne!(uniform(7, S, 42), uniform(7, S, 43));
        assert_ne!(
            uniform(7, S, 42),
            uniform(7, Stream::new(StreamKind::Drift, 3, 2), 42)
        );
    }

    #[test]
    fn uniform_is_in_range_and_spread() {
        let draws: Vec<f64> = (0..10_000).map(|i| uniform(1, S, i)).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}");
        let low = draws.iter().filter(|u| **u < 0.1).count();
        assert!((800..1200).contains(&low), "{low} draws below 0.1");
    }

    #[test]
    fn smooth_noise_is_continuous_and_hits_the_knots() {
        let period = 10_000;
        for bucket in 0..50 {
            let t = bucket * period;
            let knot = 2.0 * uniform(5, S, bucket) - 1.0;
            assert!((smooth(5, S, t, period) - knot).abs() < 1e-12);
            // 1 ms before the next knot is close to it.
            let next = 2.0 * uniform(5, S, bucket + 1) - 1.0;
            assert!((smooth(5, S, t + period - 1, period) - next).abs() < 1e-6);
        }
        for t in (0..1_000_000).step_by(997) {
            let v = smooth(5, S, t, period);
            assert!((-1.0..=1.0).contains(&v));
        }
    }
}
