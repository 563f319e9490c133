//! The test-pattern unit: fixed, known values in every type and byte order,
//! so a Modbus client's decoder can be checked against exact expectations.
//!
//! Unit [`UNIT`] (247, the highest address Modbus allows a device) answers
//! on TCP and RTU alike. Holding registers (0x03) and input registers (0x04)
//! hold the same image: registers `0x0000..=0x005F` can be read in any
//! slice (unused registers read 0), every entry of [`ENTRIES`] at its
//! address. Coils (0x01) `0..16` hold [`COILS`], discrete inputs (0x02)
//! `0..16` hold [`DISCRETE_INPUTS`]. Everything is read-only: writes are
//! answered with `IllegalDataAddress`.
//!
//! ```
//! use gridlink_sim::encoding::{ByteOrder, Value};
//! use gridlink_sim::test_pattern::{self, ENTRIES};
//!
//! let f32_cdab = ENTRIES
//!     .iter()
//!     .find(|e| matches!(e.value, Value::F32(_)) && e.order == ByteOrder::Cdab)
//!     .unwrap();
//! assert_eq!(f32_cdab.address, 0x0036);
//! assert_eq!(f32_cdab.registers(), [0x8000, 0x4366]); // 230.5 word-swapped
//! let image = test_pattern::registers();
//! assert_eq!(&image[0x36..0x38], &[0x8000, 0x4366]);
//! ```

use crate::encoding::{ByteOrder, Value};

/// The test-pattern unit id.
pub const UNIT: u8 = 247;

/// The `u16` value: `0x1234` = 4660.
pub const U16: u16 = 0x1234;
/// The `i16` value: -12345 = `0xCFC7`.
pub const I16: i16 = -12_345;
/// The `u32` value: `0x1234_5678` = 305419896.
pub const U32: u32 = 0x1234_5678;
/// The `i32` value: -123456789 = `0xF8A4_32EB`.
pub const I32: i32 = -123_456_789;
/// The `u64` value: `0x0102_0304_0506_0708` = 72623859790382856.
pub const U64: u64 = 0x0102_0304_0506_0708;
/// The `f32` value: 230.5 = `0x4366_8000`.
pub const F32: f32 = 230.5;
/// The `f64` value: -12345.678901 = `0xC0C8_1CD6_E63A_5C1C`.
pub const F64: f64 = -12_345.678_901;

/// Number of registers in the image: addresses `0x0000..0x0060`.
pub const REGISTER_COUNT: u16 = 0x0060;

/// One value of the pattern at its register address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    /// Address of the first register (holding and input alike).
    pub address: u16,
    /// The value, with its type.
    pub value: Value,
    /// Its byte order. For 16-bit values only [`ByteOrder::Abcd`] (`AB`)
    /// and [`ByteOrder::Badc`] (`BA`) appear.
    pub order: ByteOrder,
}

impl Entry {
    /// The exact register words a client reads at [`Entry::address`].
    pub fn registers(&self) -> Vec<u16> {
        self.value.to_registers(self.order)
    }
}

const fn entry(address: u16, value: Value, order: ByteOrder) -> Entry {
    Entry {
        address,
        value,
        order,
    }
}

/// Every value of the pattern: each type in each byte order.
///
/// | type | ABCD | DCBA | BADC | CDAB |
/// |---|---|---|---|---|
/// | u16 | 0x0000 (`AB`) | | 0x0001 (`BA`) | |
/// | i16 | 0x0002 (`AB`) | | 0x0003 (`BA`) | |
/// | u32 | 0x0010 | 0x0012 | 0x0014 | 0x0016 |
/// | i32 | 0x0020 | 0x0022 | 0x0024 | 0x0026 |
/// | f32 | 0x0030 | 0x0032 | 0x0034 | 0x0036 |
/// | u64 | 0x0040 | 0x0044 | 0x0048 | 0x004C |
/// | f64 | 0x0050 | 0x0054 | 0x0058 | 0x005C |
pub const ENTRIES: [Entry; 24] = {
    use ByteOrder::{Abcd, Badc, Cdab, Dcba};
    [
        entry(0x0000, Value::U16(U16), Abcd),
        entry(0x0001, Value::U16(U16), Badc),
        entry(0x0002, Value::I16(I16), Abcd),
        entry(0x0003, Value::I16(I16), Badc),
        entry(0x0010, Value::U32(U32), Abcd),
        entry(0x0012, Value::U32(U32), Dcba),
        entry(0x0014, Value::U32(U32), Badc),
        entry(0x0016, Value::U32(U32), Cdab),
        entry(0x0020, Value::I32(I32), Abcd),
        entry(0x0022, Value::I32(I32), Dcba),
        entry(0x0024, Value::I32(I32), Badc),
        entry(0x0026, Value::I32(I32), Cdab),
        entry(0x0030, Value::F32(F32), Abcd),
        entry(0x0032, Value::F32(F32), Dcba),
        entry(0x0034, Value::F32(F32), Badc),
        entry(0x0036, Value::F32(F32), Cdab),
        entry(0x0040, Value::U64(U64), Abcd),
        entry(0x0044, Value::U64(U64), Dcba),
        entry(0x0048, Value::U64(U64), Badc),
        entry(0x004C, Value::U64(U64), Cdab),
        entry(0x0050, Value::F64(F64), Abcd),
        entry(0x0054, Value::F64(F64), Dcba),
        entry(0x0058, Value::F64(F64), Badc),
        entry(0x005C, Value::F64(F64), Cdab),
    ]
};

/// Coils `0..16` (read coils, 0x01), coil 0 first.
pub const COILS: [bool; 16] = [
    true, false, true, true, false, false, true, false, //
    false, true, true, true, false, true, false, false,
];

/// Discrete inputs `0..16` (read discrete inputs, 0x02), input 0 first.
pub const DISCRETE_INPUTS: [bool; 16] = [
    false, true, true, false, true, false, false, false, //
    true, true, false, true, false, false, true, true,
];

/// The whole register image, `0x0000..0x0060`, as holding and input
/// registers hold it.
pub fn registers() -> [u16; REGISTER_COUNT as usize] {
    let mut image = [0; REGISTER_COUNT as usize];
    for entry in &ENTRIES {
        let start = usize::from(entry.address);
        let words = entry.registers();
        image[start..start + words.len()].copy_from_slice(&words);
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The image pinned word by word, so a change in the encoder or the
    /// layout cannot slip through.
    #[test]
    fn image_is_pinned() {
        let image = registers();
        let expect: &[(usize, &[u16])] = &[
            (0x00, &[0x1234, 0x3412, 0xCFC7, 0xC7CF]),
            (
                0x10,
                &[
                    0x1234, 0x5678, 0x7856, 0x3412, 0x3412, 0x7856, 0x5678, 0x1234,
                ],
            ),
            (
                0x20,
                &[
                    0xF8A4, 0x32EB, 0xEB32, 0xA4F8, 0xA4F8, 0xEB32, 0x32EB, 0xF8A4,
                ],
            ),
            (
                0x30,
                &[
                    0x4366, 0x8000, 0x0080, 0x6643, 0x6643, 0x0080, 0x8000, 0x4366,
                ],
            ),
            (
                0x40,
                &[
                    0x0102, 0x0304, 0x0506, 0x0708, 0x0807, 0x0605, 0x0403, 0x0201, 0x0201, 0x0403,
                    0x0605, 0x0807, 0x0708, 0x0506, 0x0304, 0x0102,
                ],
            ),
            (
                0x50,
                &[
                    0xC0C8, 0x1CD6, 0xE63A, 0x5C1C, 0x1C5C, 0x3AE6, 0xD61C, 0xC8C0, 0xC8C0, 0xD61C,
                    0x3AE6, 0x1C5C, 0x5C1C, 0xE63A, 0x1CD6, 0xC0C8,
                ],
            ),
        ];
        let mut pinned = [false; REGISTER_COUNT as usize];
        for (start, words) in expect {
            assert_eq!(
                &image[*start..start + words.len()],
                *words,
                "at {start:#06x}"
            );
            pinned[*start..start + words.len()].fill(true);
        }
        for (address, word) in image.iter().enumerate() {
            if !pinned[address] {
                assert_eq!(*word, 0, "unused register {address:#06x}");
            }
        }
    }

    #[test]
    fn entries_do_not_overlap_and_fit() {
        let mut used = [false; REGISTER_COUNT as usize];
        for entry in &ENTRIES {
            let start = usize::from(entry.address);
            for slot in &mut used[start..start + entry.value.register_count()] {
                assert!(!*slot, "overlap at {:#06x}", entry.address);
                *slot = true;
            }
        }
    }

    #[test]
    fn every_wide_type_appears_in_every_order() {
        for type_name in ["u32", "i32", "u64", "f32", "f64"] {
            for order in ByteOrder::ALL {
                let count = ENTRIES
                    .iter()
                    .filter(|e| e.value.type_name() == type_name && e.order == order)
                    .count();
                assert_eq!(count, 1, "{type_name} {}", order.name());
            }
        }
        for type_name in ["u16", "i16"] {
            let orders: Vec<_> = ENTRIES
                .iter()
                .filter(|e| e.value.type_name() == type_name)
                .map(|e| e.order)
                .collect();
            assert_eq!(orders, [ByteOrder::Abcd, ByteOrder::Badc], "{type_name}");
        }
    }

    #[test]
    fn constants_have_the_documented_values() {
        assert_eq!(U16, 4660);
        assert_eq!(I16 as u16, 0xCFC7);
        assert_eq!(U32, 305_419_896);
        assert_eq!(I32 as u32, 0xF8A4_32EB);
        assert_eq!(U64, 72_623_859_790_382_856);
        assert_eq!(F32.to_bits(), 0x4366_8000);
        assert_eq!(F64.to_bits(), 0xC0C8_1CD6_E63A_5C1C);
    }
}
