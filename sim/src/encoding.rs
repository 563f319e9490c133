//! Values as Modbus register words, in the four byte orders devices use.
//!
//! Modbus registers are 16-bit words sent big-endian; wider values span
//! consecutive registers and devices disagree on how to lay them out. The
//! names follow the convention users know from Telegraf, with the value's
//! big-endian bytes labelled `A B C D` (and on to `H` for 64-bit values):
//!
//! | order | 32-bit layout | meaning |
//! |---|---|---|
//! | [`ByteOrder::Abcd`] | `AB CD` | big-endian words, high word first |
//! | [`ByteOrder::Dcba`] | `DC BA` | fully reversed (little-endian) |
//! | [`ByteOrder::Badc`] | `BA DC` | bytes swapped within each word, high word first |
//! | [`ByteOrder::Cdab`] | `CD AB` | big-endian words, low word first (word swap) |
//!
//! 64-bit values extend the same rule to four words (`Cdab` of
//! `ABCDEFGH` is `GH EF CD AB`). A 16-bit value has one word, so only the
//! byte swap matters: `Abcd` and `Cdab` give `AB`, `Dcba` and `Badc` give `BA`.

/// How a value's bytes are laid out over consecutive registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Big-endian words, high word first (`AB CD`); `AB` for 16-bit values.
    Abcd,
    /// Fully reversed, little-endian (`DC BA`); `BA` for 16-bit values.
    Dcba,
    /// Bytes swapped within each word, high word first (`BA DC`); `BA` for 16-bit values.
    Badc,
    /// Big-endian words, low word first (`CD AB`); `AB` for 16-bit values.
    Cdab,
}

impl ByteOrder {
    /// All four orders.
    pub const ALL: [Self; 4] = [Self::Abcd, Self::Dcba, Self::Badc, Self::Cdab];

    /// The conventional name: `"ABCD"`, `"DCBA"`, `"BADC"` or `"CDAB"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Abcd => "ABCD",
            Self::Dcba => "DCBA",
            Self::Badc => "BADC",
            Self::Cdab => "CDAB",
        }
    }

    /// Whether the bytes within each word are swapped.
    const fn swaps_bytes(self) -> bool {
        matches!(self, Self::Dcba | Self::Badc)
    }

    /// Whether the words are in reverse (low word first) order.
    const fn swaps_words(self) -> bool {
        matches!(self, Self::Dcba | Self::Cdab)
    }
}

/// A typed value as a device stores it in registers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// Unsigned 16-bit integer, one register.
    U16(u16),
    /// Signed 16-bit integer, one register.
    I16(i16),
    /// Unsigned 32-bit integer, two registers.
    U32(u32),
    /// Signed 32-bit integer, two registers.
    I32(i32),
    /// Unsigned 64-bit integer, four registers.
    U64(u64),
    /// IEEE 754 single precision, two registers.
    F32(f32),
    /// IEEE 754 double precision, four registers.
    F64(f64),
}

impl Value {
    /// How many 16-bit registers the value occupies.
    pub const fn register_count(self) -> usize {
        match self {
            Self::U16(_) | Self::I16(_) => 1,
            Self::U32(_) | Self::I32(_) | Self::F32(_) => 2,
            Self::U64(_) | Self::F64(_) => 4,
        }
    }

    /// The type's name as used in register maps: `"u16"`, `"f32"`, ...
    pub const fn type_name(self) -> &'static str {
        match self {
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::U64(_) => "u64",
            Self::F32(_) => "f32",
            Self::F64(_) => "f64",
        }
    }

    /// The value's bytes, most significant first (`A B C D ...`).
    fn big_endian_bytes(self) -> Vec<u8> {
        match self {
            Self::U16(v) => v.to_be_bytes().to_vec(),
            Self::I16(v) => v.to_be_bytes().to_vec(),
            Self::U32(v) => v.to_be_bytes().to_vec(),
            Self::I32(v) => v.to_be_bytes().to_vec(),
            Self::U64(v) => v.to_be_bytes().to_vec(),
            Self::F32(v) => v.to_be_bytes().to_vec(),
            Self::F64(v) => v.to_be_bytes().to_vec(),
        }
    }

    /// The register words, in transmission order (lowest address first).
    pub fn to_registers(self, order: ByteOrder) -> Vec<u16> {
        let bytes = self.big_endian_bytes();
        let mut words: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| {
                if order.swaps_bytes() {
                    u16::from_be_bytes([pair[1], pair[0]])
                } else {
                    u16::from_be_bytes([pair[0], pair[1]])
                }
            })
            .collect();
        if order.swaps_words() {
            words.reverse();
        }
        words
    }
}

/// An `f32` as two big-endian registers, high word first (`ABCD`), the
/// layout of every Eastron SDM630 measurement.
pub fn f32_abcd(value: f32) -> [u16; 2] {
    let bits = value.to_bits();
    [(bits >> 16) as u16, bits as u16]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(value: Value) -> [Vec<u16>; 4] {
        ByteOrder::ALL.map(|order| value.to_registers(order))
    }

    #[test]
    fn sixteen_bit_values_only_swap_bytes() {
        assert_eq!(
            words(Value::U16(0x1234)),
            [vec![0x1234], vec![0x3412], vec![0x3412], vec![0x1234]]
        );
        // -12345 = 0xCFC7
        assert_eq!(
            words(Value::I16(-12345)),
            [vec![0xCFC7], vec![0xC7CF], vec![0xC7CF], vec![0xCFC7]]
        );
    }

    #[test]
    fn thirty_two_bit_orders() {
        assert_eq!(
            words(Value::U32(0x1234_5678)),
            [
                vec![0x1234, 0x5678],
                vec![0x7856, 0x3412],
                vec![0x3412, 0x7856],
                vec![0x5678, 0x1234],
            ]
        );
        // -123456789 = 0xF8A4_32EB
        assert_eq!(
            words(Value::I32(-123_456_789)),
            [
                vec![0xF8A4, 0x32EB],
                vec![0xEB32, 0xA4F8],
                vec![0xA4F8, 0xEB32],
                vec![0x32EB, 0xF8A4],
            ]
        );
        // 230.5 = 0x4366_8000
        assert_eq!(
            words(Value::F32(230.5)),
            [
                vec![0x4366, 0x8000],
                vec![0x0080, 0x6643],
                vec![0x6643, 0x0080],
                vec![0x8000, 0x4366],
            ]
        );
    }

    #[test]
    fn sixty_four_bit_orders() {
        assert_eq!(
            words(Value::U64(0x0102_0304_0506_0708)),
            [
                vec![0x0102, 0x0304, 0x0506, 0x0708],
                vec![0x0807, 0x0605, 0x0403, 0x0201],
                vec![0x0201, 0x0403, 0x0605, 0x0807],
                vec![0x0708, 0x0506, 0x0304, 0x0102],
            ]
        );
        // -12345.678901 = 0xC0C8_1CD6_E63A_5C1C
        assert_eq!(
            words(Value::F64(-12_345.678_901)),
            [
                vec![0xC0C8, 0x1CD6, 0xE63A, 0x5C1C],
                vec![0x1C5C, 0x3AE6, 0xD61C, 0xC8C0],
                vec![0xC8C0, 0xD61C, 0x3AE6, 0x1C5C],
                vec![0x5C1C, 0xE63A, 0x1CD6, 0xC0C8],
            ]
        );
    }

    #[test]
    fn register_counts_match_encodings() {
        for value in [
            Value::U16(1),
            Value::I16(-1),
            Value::U32(1),
            Value::I32(-1),
            Value::U64(1),
            Value::F32(1.0),
            Value::F64(1.0),
        ] {
            for order in ByteOrder::ALL {
                assert_eq!(value.to_registers(order).len(), value.register_count());
            }
        }
    }

    #[test]
    fn f32_abcd_is_the_abcd_encoding() {
        for v in [0.0_f32, -1.5, 230.17, 49.98, 12_345.67] {
            assert_eq!(
                f32_abcd(v).to_vec(),
                Value::F32(v).to_registers(ByteOrder::Abcd)
            );
        }
        assert_eq!(f32_abcd(230.5), [0x4366, 0x8000]);
    }
}
