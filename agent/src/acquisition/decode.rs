//! Decoding: register words (or a bit) into a point's quantized value.
//!
//! Pure. The words are put in big-endian order first (`ABCD`: high word
//! first, high byte first in each word), then read as the point's type,
//! multiplied by its scale and quantized to its exponent with
//! [`gridlink_protocol::telemetry::quantize`].

use crate::config::{ByteOrder, PointConfig, ValueType};

/// Why a point's registers gave no reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ValueError {
    /// The value is NaN or infinite: meters use this for "not available".
    #[error("value is {0} (the meter reports no valid value)")]
    NotFinite(f64),
    /// The value does not fit a 64-bit integer at the point's exponent.
    #[error("value {value:e} does not fit at exponent {exponent}")]
    OutOfRange {
        /// The value after scaling.
        value: f64,
        /// The point's exponent.
        exponent: i8,
    },
    /// The response held fewer registers than the point needs.
    #[error("response too short: {got} of {needed} registers")]
    Truncated {
        /// Registers the point needs.
        needed: usize,
        /// Registers available.
        got: usize,
    },
}

/// A register value before scaling, exactly as the type encodes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue {
    /// A bit.
    Bool(bool),
    /// An unsigned integer.
    Unsigned(u64),
    /// A signed integer.
    Signed(i64),
    /// A float.
    Float(f64),
}

impl RawValue {
    /// The value as a float (a bit is 0 or 1).
    pub fn as_f64(self) -> f64 {
        match self {
            Self::Bool(b) => f64::from(u8::from(b)),
            Self::Unsigned(u) => u as f64,
            Self::Signed(i) => i as f64,
            Self::Float(f) => f,
        }
    }

    fn as_i128(self) -> Option<i128> {
        match self {
            Self::Bool(b) => Some(i128::from(b)),
            Self::Unsigned(u) => Some(i128::from(u)),
            Self::Signed(i) => Some(i128::from(i)),
            Self::Float(_) => None,
        }
    }
}

/// The registers of a value in big-endian (`ABCD`) order as one integer:
/// `words` has 1, 2 or 4 registers as they came off the wire.
pub fn to_big_endian(words: &[u16], order: ByteOrder) -> u64 {
    let mut bits = 0u64;
    let mut push = |word: u16| {
        let word = if order.swaps_bytes() {
            word.swap_bytes()
        } else {
            word
        };
        bits = (bits << 16) | u64::from(word);
    };
    if order.swaps_words() {
        words.iter().rev().copied().for_each(&mut push);
    } else {
        words.iter().copied().for_each(&mut push);
    }
    bits
}

/// Reads `words` (exactly the type's width) as `value_type`.
pub fn raw_value(words: &[u16], value_type: ValueType, order: ByteOrder) -> RawValue {
    let bits = to_big_endian(words, order);
    match value_type {
        ValueType::Bool => RawValue::Bool(bits != 0),
        ValueType::U16 | ValueType::U32 | ValueType::U64 => RawValue::Unsigned(bits),
        ValueType::I16 => RawValue::Signed(i64::from(bits as u16 as i16)),
        ValueType::I32 => RawValue::Signed(i64::from(bits as u32 as i32)),
        ValueType::I64 => RawValue::Signed(bits as i64),
        ValueType::F32 => RawValue::Float(f64::from(f32::from_bits(bits as u32))),
        ValueType::F64 => RawValue::Float(f64::from_bits(bits)),
    }
}

/// Scales `raw` and quantizes it to `10^exponent`.
///
/// Integers with scale 1 are converted exactly (a 64-bit energy counter
/// keeps every digit); everything else goes through `f64`.
pub fn quantize(raw: RawValue, scale: f64, exponent: i8) -> Result<i64, ValueError> {
    #[expect(
        clippy::float_cmp,
        reason = "exactly 1.0 is the default, meaning no scaling"
    )]
    let unscaled = scale == 1.0;
    if let (true, Some(int)) = (unscaled, raw.as_i128()) {
        return quantize_integer(int, exponent).ok_or(ValueError::OutOfRange {
            value: int as f64,
            exponent,
        });
    }
    let value = raw.as_f64() * scale;
    if !value.is_finite() {
        return Err(ValueError::NotFinite(value));
    }
    gridlink_protocol::telemetry::quantize(value, exponent)
        .ok_or(ValueError::OutOfRange { value, exponent })
}

/// `value / 10^exponent`, rounded half away from zero, if it fits an i64.
fn quantize_integer(value: i128, exponent: i8) -> Option<i64> {
    let power = 10i128.checked_pow(u32::from(exponent.unsigned_abs()))?;
    let scaled = if exponent <= 0 {
        value.checked_mul(power)?
    } else {
        let (quotient, remainder) = (value / power, value % power);
        if remainder.abs() * 2 >= power {
            quotient + value.signum()
        } else {
            quotient
        }
    };
    i64::try_from(scaled).ok()
}

/// The quantized value of `point` from its registers.
pub fn decode_registers(point: &PointConfig, words: &[u16]) -> Result<i64, ValueError> {
    let width = usize::from(point.width());
    let words = words.get(..width).ok_or(ValueError::Truncated {
        needed: width,
        got: words.len(),
    })?;
    let raw = raw_value(words, point.value_type(), point.byte_order);
    quantize(raw, point.scale, point.exponent())
}

/// The quantized value of a coil or discrete-input `point`.
pub fn decode_bit(point: &PointConfig, bit: bool) -> Result<i64, ValueError> {
    quantize(RawValue::Bool(bit), point.scale, point.exponent())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RegisterKind;
    use gridlink_protocol::{Phase, Quantity};

    fn point(
        value_type: ValueType,
        byte_order: ByteOrder,
        scale: f64,
        exponent: i8,
    ) -> PointConfig {
        PointConfig {
            register: RegisterKind::Holding,
            address: 0,
            value_type: Some(value_type),
            byte_order,
            scale,
            quantity: Quantity::ActivePower,
            phase: Phase::Total,
            exponent: Some(exponent),
        }
    }

    /// Every type in every byte order, with the words a device sends.
    /// Values: u16 `0x1234`, i16 -12345 (`0xCFC7`), u32 `0x12345678`,
    /// i32 -123456789 (`0xF8A432EB`), f32 230.5 (`0x43668000`), u64
    /// `0x0102030405060708`, i64 -2 (`0xFFFFFFFFFFFFFFFE`), f64
    /// -12345.678901 (`0xC0C81CD6E63A5C1C`).
    const CASES: &[(ValueType, ByteOrder, &[u16], RawValue)] = {
        use ByteOrder::{Ab, Abcd, Ba, Badc, Cdab, Dcba};
        use ValueType::{F32, F64, I16, I32, I64, U16, U32, U64};
        &[
            (U16, Abcd, &[0x1234], RawValue::Unsigned(0x1234)),
            (U16, Ab, &[0x1234], RawValue::Unsigned(0x1234)),
            (U16, Cdab, &[0x1234], RawValue::Unsigned(0x1234)),
            (U16, Ba, &[0x3412], RawValue::Unsigned(0x1234)),
            (U16, Badc, &[0x3412], RawValue::Unsigned(0x1234)),
            (U16, Dcba, &[0x3412], RawValue::Unsigned(0x1234)),
            (I16, Abcd, &[0xCFC7], RawValue::Signed(-12_345)),
            (I16, Ba, &[0xC7CF], RawValue::Signed(-12_345)),
            (
                U32,
                Abcd,
                &[0x1234, 0x5678],
                RawValue::Unsigned(0x1234_5678),
            ),
            (
                U32,
                Dcba,
                &[0x7856, 0x3412],
                RawValue::Unsigned(0x1234_5678),
            ),
            (
                U32,
                Badc,
                &[0x3412, 0x7856],
                RawValue::Unsigned(0x1234_5678),
            ),
            (
                U32,
                Cdab,
                &[0x5678, 0x1234],
                RawValue::Unsigned(0x1234_5678),
            ),
            (I32, Abcd, &[0xF8A4, 0x32EB], RawValue::Signed(-123_456_789)),
            (I32, Dcba, &[0xEB32, 0xA4F8], RawValue::Signed(-123_456_789)),
            (I32, Badc, &[0xA4F8, 0xEB32], RawValue::Signed(-123_456_789)),
            (I32, Cdab, &[0x32EB, 0xF8A4], RawValue::Signed(-123_456_789)),
            (F32, Abcd, &[0x4366, 0x8000], RawValue::Float(230.5)),
            (F32, Dcba, &[0x0080, 0x6643], RawValue::Float(230.5)),
            (F32, Badc, &[0x6643, 0x0080], RawValue::Float(230.5)),
            (F32, Cdab, &[0x8000, 0x4366], RawValue::Float(230.5)),
            (
                U64,
                Abcd,
                &[0x0102, 0x0304, 0x0506, 0x0708],
                RawValue::Unsigned(0x0102_0304_0506_0708),
            ),
            (
                U64,
                Dcba,
                &[0x0807, 0x0605, 0x0403, 0x0201],
                RawValue::Unsigned(0x0102_0304_0506_0708),
            ),
            (
                U64,
                Badc,
                &[0x0201, 0x0403, 0x0605, 0x0807],
                RawValue::Unsigned(0x0102_0304_0506_0708),
            ),
            (
                U64,
                Cdab,
                &[0x0708, 0x0506, 0x0304, 0x0102],
                RawValue::Unsigned(0x0102_0304_0506_0708),
            ),
            (
                I64,
                Abcd,
                &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE],
                RawValue::Signed(-2),
            ),
            (
                I64,
                Cdab,
                &[0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF],
                RawValue::Signed(-2),
            ),
            (
                I64,
                Dcba,
                &[0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF],
                RawValue::Signed(-2),
            ),
            (
                I64,
                Badc,
                &[0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF],
                RawValue::Signed(-2),
            ),
            (
                F64,
                Abcd,
                &[0xC0C8, 0x1CD6, 0xE63A, 0x5C1C],
                RawValue::Float(-12_345.678_901),
            ),
            (
                F64,
                Dcba,
                &[0x1C5C, 0x3AE6, 0xD61C, 0xC8C0],
                RawValue::Float(-12_345.678_901),
            ),
            (
                F64,
                Badc,
                &[0xC8C0, 0xD61C, 0x3AE6, 0x1C5C],
                RawValue::Float(-12_345.678_901),
            ),
            (
                F64,
                Cdab,
                &[0x5C1C, 0xE63A, 0x1CD6, 0xC0C8],
                RawValue::Float(-12_345.678_901),
            ),
        ]
    };

    #[test]
    fn every_type_in_every_byte_order() {
        for &(value_type, order, words, expected) in CASES {
            assert_eq!(
                raw_value(words, value_type, order),
                expected,
                "{value_type} {order} {words:04X?}"
            );
        }
        // The pinned words really are the values' IEEE encodings.
        assert_eq!(230.5f32.to_bits(), 0x4366_8000);
        assert_eq!((-12_345.678_901f64).to_bits(), 0xC0C8_1CD6_E63A_5C1C);
    }

    #[test]
    fn scale_and_exponent() {
        use ByteOrder::Abcd;
        // f32 230.5 V at 0.1 V.
        let p = point(ValueType::F32, Abcd, 1.0, -1);
        assert_eq!(decode_registers(&p, &[0x4366, 0x8000]), Ok(2305));
        // u16 2301 counting 0.1 V, stored at 0.1 V: exactly 2301.
        let p = point(ValueType::U16, Abcd, 0.1, -1);
        assert_eq!(decode_registers(&p, &[2301]), Ok(2301));
        // i16 -1234 W scaled ×10, stored in W.
        let p = point(ValueType::I16, Abcd, 10.0, 0);
        assert_eq!(decode_registers(&p, &[(-1234i16) as u16]), Ok(-12_340));
        // u32 kWh × 1000 → Wh.
        let p = point(ValueType::U32, Abcd, 1000.0, 0);
        assert_eq!(decode_registers(&p, &[0x0001, 0x0000]), Ok(65_536_000));
        // Rounding half away from zero at a coarser exponent, exactly for integers.
        let p = point(ValueType::I32, Abcd, 1.0, 1);
        assert_eq!(decode_registers(&p, &[0xFFFF, 0xFFF1]), Ok(-2)); // -15 → -2 ×10
        assert_eq!(decode_registers(&p, &[0x0000, 0x000E]), Ok(1)); // 14 → 1 ×10
        // A u64 counter beyond 2^53 keeps every digit with scale 1.
        let p = point(ValueType::U64, Abcd, 1.0, 0);
        assert_eq!(
            decode_registers(&p, &[0x0020, 0x0000, 0x0000, 0x0001]),
            Ok((1i64 << 53) + 1)
        );
        // ... and u64 beyond i64 does not fit.
        assert!(matches!(
            decode_registers(&p, &[0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Err(ValueError::OutOfRange { .. })
        ));
        // A bit, and a response that is too short.
        let mut bit = point(ValueType::Bool, Abcd, 1.0, 0);
        bit.register = RegisterKind::Coil;
        assert_eq!(decode_bit(&bit, true), Ok(1));
        assert_eq!(decode_bit(&bit, false), Ok(0));
        let p = point(ValueType::F64, Abcd, 1.0, 0);
        assert_eq!(
            decode_registers(&p, &[1, 2]),
            Err(ValueError::Truncated { needed: 4, got: 2 })
        );
    }

    #[test]
    fn not_a_number_is_an_error_not_a_reading() {
        let p = point(ValueType::F32, ByteOrder::Abcd, 1.0, -1);
        // 0x7FC00000 = NaN, 0xFFC00000 = -NaN, 0x7F800000 = +inf.
        for words in [[0x7FC0, 0x0000], [0xFFC0, 0x0000], [0x7F80, 0x0000]] {
            let err = decode_registers(&p, &words).unwrap_err();
            assert!(
                matches!(err, ValueError::NotFinite(_)),
                "{words:04X?}: {err}"
            );
        }
        assert!(
            decode_registers(&p, &[0x7F80, 0])
                .unwrap_err()
                .to_string()
                .contains("inf")
        );
        // f32::MAX is finite but too large at 0.1 resolution.
        let err = decode_registers(&p, &[0x7F7F, 0xFFFF]).unwrap_err();
        assert!(
            matches!(err, ValueError::OutOfRange { exponent: -1, .. }),
            "{err}"
        );
        // Scaling can overflow a finite f64 too.
        let p = point(ValueType::F64, ByteOrder::Abcd, 1e300, 0);
        assert!(matches!(
            decode_registers(&p, &[0x7FEF, 0xFFFF, 0xFFFF, 0xFFFF]),
            Err(ValueError::NotFinite(_))
        ));
    }
}
