//! The register maps of the simulated devices, and Modbus requests
//! answered from the model.
//!
//! * Meters (units `1..=N`): the Eastron SDM630 input registers,
//!   [`sdm630`], `0x0000..0x0050` readable as one block.
//! * Unit 1 also carries the loads: relays as coils at [`RELAY_BASE`],
//!   setpoints at [`SETPOINT_BASE`], rated powers at [`RATED_POWER_BASE`]
//!   (holding) and present powers at [`LOAD_POWER_BASE`] (input).
//! * Unit 247: the [`test_pattern`].
//!
//! A read or write reaching outside a block is answered with
//! `IllegalDataAddress`, a quantity outside the Modbus limits (1-125
//! registers, 1-2000 bits read; 1-123 registers, 1-1968 coils written)
//! with `IllegalDataValue`, any other function with `IllegalFunction`.
//! The request handler is pure: it takes the model, already advanced to
//! the time of the request; the servers add the transport behaviour.

use tokio_modbus::{ExceptionCode, Request, Response};

use crate::encoding::f32_abcd;
use crate::model::{MeterValues, SiteModel};
use crate::test_pattern;

/// Input register addresses of the Eastron SDM630 map (function 0x04).
/// Every quantity is a float32 in two registers, high word first (`ABCD`).
pub mod sdm630 {
    /// Phase 1 line-to-neutral voltage, V (30001).
    pub const PHASE_1_VOLTAGE: u16 = 0x0000;
    /// Phase 2 line-to-neutral voltage, V (30003).
    pub const PHASE_2_VOLTAGE: u16 = 0x0002;
    /// Phase 3 line-to-neutral voltage, V (30005).
    pub const PHASE_3_VOLTAGE: u16 = 0x0004;
    /// Phase 1 current, A (30007).
    pub const PHASE_1_CURRENT: u16 = 0x0006;
    /// Phase 2 current, A (30009).
    pub const PHASE_2_CURRENT: u16 = 0x0008;
    /// Phase 3 current, A (30011).
    pub const PHASE_3_CURRENT: u16 = 0x000A;
    /// Phase 1 active power, W (30013).
    pub const PHASE_1_POWER: u16 = 0x000C;
    /// Phase 2 active power, W (30015).
    pub const PHASE_2_POWER: u16 = 0x000E;
    /// Phase 3 active power, W (30017).
    pub const PHASE_3_POWER: u16 = 0x0010;
    /// Phase 1 apparent power, VA (30019).
    pub const PHASE_1_APPARENT_POWER: u16 = 0x0012;
    /// Phase 2 apparent power, VA (30021).
    pub const PHASE_2_APPARENT_POWER: u16 = 0x0014;
    /// Phase 3 apparent power, VA (30023).
    pub const PHASE_3_APPARENT_POWER: u16 = 0x0016;
    /// Phase 1 reactive power, var (30025).
    pub const PHASE_1_REACTIVE_POWER: u16 = 0x0018;
    /// Phase 2 reactive power, var (30027).
    pub const PHASE_2_REACTIVE_POWER: u16 = 0x001A;
    /// Phase 3 reactive power, var (30029).
    pub const PHASE_3_REACTIVE_POWER: u16 = 0x001C;
    /// Phase 1 power factor, signed by current direction (30031).
    pub const PHASE_1_POWER_FACTOR: u16 = 0x001E;
    /// Phase 2 power factor (30033).
    pub const PHASE_2_POWER_FACTOR: u16 = 0x0020;
    /// Phase 3 power factor (30035).
    pub const PHASE_3_POWER_FACTOR: u16 = 0x0022;
    /// Phase 1 phase angle, degrees (30037).
    pub const PHASE_1_ANGLE: u16 = 0x0024;
    /// Phase 2 phase angle, degrees (30039).
    pub const PHASE_2_ANGLE: u16 = 0x0026;
    /// Phase 3 phase angle, degrees (30041).
    pub const PHASE_3_ANGLE: u16 = 0x0028;
    /// Average line-to-neutral voltage, V (30043).
    pub const AVERAGE_VOLTAGE: u16 = 0x002A;
    /// Average line current, A (30047).
    pub const AVERAGE_CURRENT: u16 = 0x002E;
    /// Sum of line currents, A (30049).
    pub const SUM_OF_CURRENTS: u16 = 0x0030;
    /// Total system power, W (30053).
    pub const TOTAL_POWER: u16 = 0x0034;
    /// Total system apparent power, VA (30057).
    pub const TOTAL_APPARENT_POWER: u16 = 0x0038;
    /// Total system reactive power, var (30061).
    pub const TOTAL_REACTIVE_POWER: u16 = 0x003C;
    /// Total system power factor (30063).
    pub const TOTAL_POWER_FACTOR: u16 = 0x003E;
    /// Total system phase angle, degrees (30067).
    pub const TOTAL_ANGLE: u16 = 0x0042;
    /// Frequency of supply voltages, Hz (30071).
    pub const FREQUENCY: u16 = 0x0046;
    /// Import active energy, kWh (30073).
    pub const IMPORT_ENERGY: u16 = 0x0048;
    /// Export active energy, kWh (30075).
    pub const EXPORT_ENERGY: u16 = 0x004A;
    /// Import reactive energy, kvarh (30077).
    pub const IMPORT_REACTIVE_ENERGY: u16 = 0x004C;
    /// Export reactive energy, kvarh (30079).
    pub const EXPORT_REACTIVE_ENERGY: u16 = 0x004E;
    /// Registers `0x0000..0x0050` form one readable block.
    pub const BLOCK_LEN: u16 = 0x0050;
}

/// Holding registers (0x03/0x06/0x10) of unit 1: load setpoints.
/// Load `k` (1-based) has its setpoint, u16 percent 0-100, at `k - 1`.
pub const SETPOINT_BASE: u16 = 0x0000;
/// Holding registers (0x03, read-only) of unit 1: load `k`'s rated power,
/// float32 `ABCD` in W, at `0x0100 + 2 * (k - 1)`.
pub const RATED_POWER_BASE: u16 = 0x0100;
/// Input registers (0x04) of unit 1: load `k`'s present power, float32
/// `ABCD` in W (0 when off), at `0x1000 + 2 * (k - 1)`.
pub const LOAD_POWER_BASE: u16 = 0x1000;
/// Coils (0x01/0x05/0x0F) of unit 1: load `k`'s relay at `k - 1`.
pub const RELAY_BASE: u16 = 0x0000;

/// Most registers one read may ask for (Modbus: 125).
const MAX_READ_REGISTERS: u16 = 125;
/// Most bits one read may ask for (Modbus: 2000).
const MAX_READ_BITS: u16 = 2000;
/// Most registers one write may carry (Modbus: 123).
const MAX_WRITE_REGISTERS: usize = 123;
/// Most coils one write may carry (Modbus: 1968).
const MAX_WRITE_COILS: usize = 1968;

/// The answer to `request` for `unit`, or `None` if the site has no such unit.
pub(crate) fn respond(
    model: &mut SiteModel,
    unit: u8,
    request: &Request<'_>,
) -> Option<Result<Response, ExceptionCode>> {
    if unit == test_pattern::UNIT {
        return Some(respond_test_pattern(request));
    }
    if unit == 0 || unit > model.meter_count() {
        return None;
    }
    Some(if unit == 1 {
        respond_main(model, request)
    } else {
        respond_sub_meter(model, unit, request)
    })
}

fn respond_test_pattern(request: &Request<'_>) -> Result<Response, ExceptionCode> {
    match *request {
        Request::ReadCoils(addr, qty) => {
            check_bit_quantity(qty)?;
            Ok(Response::ReadCoils(
                slice(&test_pattern::COILS, 0, addr, qty)?.to_vec(),
            ))
        }
        Request::ReadDiscreteInputs(addr, qty) => {
            check_bit_quantity(qty)?;
            Ok(Response::ReadDiscreteInputs(
                slice(&test_pattern::DISCRETE_INPUTS, 0, addr, qty)?.to_vec(),
            ))
        }
        Request::ReadHoldingRegisters(addr, qty) => {
            check_register_quantity(qty)?;
            Ok(Response::ReadHoldingRegisters(
                slice(&test_pattern::registers(), 0, addr, qty)?.to_vec(),
            ))
        }
        Request::ReadInputRegisters(addr, qty) => {
            check_register_quantity(qty)?;
            Ok(Response::ReadInputRegisters(
                slice(&test_pattern::registers(), 0, addr, qty)?.to_vec(),
            ))
        }
        Request::WriteSingleCoil(..)
        | Request::WriteMultipleCoils(..)
        | Request::WriteSingleRegister(..)
        | Request::WriteMultipleRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

fn respond_sub_meter(
    model: &SiteModel,
    unit: u8,
    request: &Request<'_>,
) -> Result<Response, ExceptionCode> {
    match *request {
        Request::ReadInputRegisters(addr, qty) => {
            check_register_quantity(qty)?;
            let values = model
                .meter(unit)
                .ok_or(ExceptionCode::ServerDeviceFailure)?;
            Ok(Response::ReadInputRegisters(
                slice(&meter_registers(&values), 0, addr, qty)?.to_vec(),
            ))
        }
        Request::ReadCoils(_, qty) | Request::ReadDiscreteInputs(_, qty) => {
            check_bit_quantity(qty)?;
            Err(ExceptionCode::IllegalDataAddress)
        }
        Request::ReadHoldingRegisters(_, qty) => {
            check_register_quantity(qty)?;
            Err(ExceptionCode::IllegalDataAddress)
        }
        Request::WriteSingleCoil(..)
        | Request::WriteMultipleCoils(..)
        | Request::WriteSingleRegister(..)
        | Request::WriteMultipleRegisters(..) => Err(ExceptionCode::IllegalDataAddress),
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

/// Unit 1: the main meter's SDM630 map plus the loads' coils and registers.
fn respond_main(model: &mut SiteModel, request: &Request<'_>) -> Result<Response, ExceptionCode> {
    let loads = model.load_count();
    match *request {
        Request::ReadInputRegisters(addr, qty) => {
            check_register_quantity(qty)?;
            if addr < sdm630::BLOCK_LEN {
                let values = model.meter(1).ok_or(ExceptionCode::ServerDeviceFailure)?;
                Ok(Response::ReadInputRegisters(
                    slice(&meter_registers(&values), 0, addr, qty)?.to_vec(),
                ))
            } else {
                let powers = load_registers(model, |load| load.power_w);
                Ok(Response::ReadInputRegisters(
                    slice(&powers, LOAD_POWER_BASE, addr, qty)?.to_vec(),
                ))
            }
        }
        Request::ReadHoldingRegisters(addr, qty) => {
            check_register_quantity(qty)?;
            if addr < RATED_POWER_BASE {
                let setpoints: Vec<u16> = (1..=loads)
                    .filter_map(|k| model.load(k))
                    .map(|load| load.setpoint_percent)
                    .collect();
                Ok(Response::ReadHoldingRegisters(
                    slice(&setpoints, SETPOINT_BASE, addr, qty)?.to_vec(),
                ))
            } else {
                let rated = load_registers(model, |load| load.rated_power_w);
                Ok(Response::ReadHoldingRegisters(
                    slice(&rated, RATED_POWER_BASE, addr, qty)?.to_vec(),
                ))
            }
        }
        Request::ReadCoils(addr, qty) => {
            check_bit_quantity(qty)?;
            let relays: Vec<bool> = (1..=loads)
                .filter_map(|k| model.load(k))
                .map(|load| load.on)
                .collect();
            Ok(Response::ReadCoils(
                slice(&relays, RELAY_BASE, addr, qty)?.to_vec(),
            ))
        }
        Request::ReadDiscreteInputs(_, qty) => {
            check_bit_quantity(qty)?;
            Err(ExceptionCode::IllegalDataAddress)
        }
        Request::WriteSingleCoil(addr, on) => {
            let first = load_index(addr, 1, RELAY_BASE, loads)?;
            model.set_load_on(first, on);
            Ok(Response::WriteSingleCoil(addr, on))
        }
        Request::WriteMultipleCoils(addr, ref coils) => {
            if coils.is_empty() || coils.len() > MAX_WRITE_COILS {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let first = load_index(addr, coils.len(), RELAY_BASE, loads)?;
            for (k, on) in (first..).zip(coils.iter()) {
                model.set_load_on(k, *on);
            }
            Ok(Response::WriteMultipleCoils(addr, coils.len() as u16))
        }
        Request::WriteSingleRegister(addr, value) => {
            let first = writable_setpoint(addr, 1, loads)?;
            check_setpoint(value)?;
            model.set_load_setpoint(first, value);
            Ok(Response::WriteSingleRegister(addr, value))
        }
        Request::WriteMultipleRegisters(addr, ref values) => {
            if values.is_empty() || values.len() > MAX_WRITE_REGISTERS {
                return Err(ExceptionCode::IllegalDataValue);
            }
            let first = writable_setpoint(addr, values.len(), loads)?;
            for value in values.iter() {
                check_setpoint(*value)?;
            }
            for (k, value) in (first..).zip(values.iter()) {
                model.set_load_setpoint(k, *value);
            }
            Ok(Response::WriteMultipleRegisters(addr, values.len() as u16))
        }
        _ => Err(ExceptionCode::IllegalFunction),
    }
}

/// The SDM630 input register block `0x0000..0x0050` of a meter. Loads are
/// resistive (power factor 1): apparent power equals active power, reactive
/// power and reactive energy are 0, the power factor is +1 importing and -1
/// exporting, the phase angle 0 or 180 degrees. Registers the SDM630 leaves
/// unused inside the block read 0.
pub fn meter_registers(values: &MeterValues) -> [u16; sdm630::BLOCK_LEN as usize] {
    use sdm630::{
        AVERAGE_CURRENT, AVERAGE_VOLTAGE, BLOCK_LEN, EXPORT_ENERGY, EXPORT_REACTIVE_ENERGY,
        FREQUENCY, IMPORT_ENERGY, IMPORT_REACTIVE_ENERGY, PHASE_1_ANGLE, PHASE_1_APPARENT_POWER,
        PHASE_1_CURRENT, PHASE_1_POWER, PHASE_1_POWER_FACTOR, PHASE_1_REACTIVE_POWER,
        PHASE_1_VOLTAGE, SUM_OF_CURRENTS, TOTAL_ANGLE, TOTAL_APPARENT_POWER, TOTAL_POWER,
        TOTAL_POWER_FACTOR, TOTAL_REACTIVE_POWER,
    };
    let mut image = [0; BLOCK_LEN as usize];
    let mut put = |address: u16, value: f32| {
        let at = usize::from(address);
        image[at..at + 2].copy_from_slice(&f32_abcd(value));
    };
    let pf = |power: f32| if power < 0.0 { -1.0 } else { 1.0 };
    let angle = |power: f32| if power < 0.0 { 180.0 } else { 0.0 };
    for phase in 0..3 {
        let offset = 2 * phase as u16;
        let power = values.power_w[phase];
        put(PHASE_1_VOLTAGE + offset, values.voltage_v[phase]);
        put(PHASE_1_CURRENT + offset, values.current_a[phase]);
        put(PHASE_1_POWER + offset, power);
        put(PHASE_1_APPARENT_POWER + offset, power.abs());
        put(PHASE_1_REACTIVE_POWER + offset, 0.0);
        put(PHASE_1_POWER_FACTOR + offset, pf(power));
        put(PHASE_1_ANGLE + offset, angle(power));
    }
    let current_sum: f32 = values.current_a.iter().sum();
    let apparent_sum: f32 = values.power_w.iter().map(|p| p.abs()).sum();
    put(AVERAGE_VOLTAGE, values.voltage_v.iter().sum::<f32>() / 3.0);
    put(AVERAGE_CURRENT, current_sum / 3.0);
    put(SUM_OF_CURRENTS, current_sum);
    put(TOTAL_POWER, values.total_power_w);
    put(TOTAL_APPARENT_POWER, apparent_sum);
    put(TOTAL_REACTIVE_POWER, 0.0);
    put(TOTAL_POWER_FACTOR, pf(values.total_power_w));
    put(TOTAL_ANGLE, angle(values.total_power_w));
    put(FREQUENCY, values.frequency_hz);
    put(IMPORT_ENERGY, values.import_kwh);
    put(EXPORT_ENERGY, values.export_kwh);
    put(IMPORT_REACTIVE_ENERGY, 0.0);
    put(EXPORT_REACTIVE_ENERGY, 0.0);
    image
}

/// One float32 (`ABCD`) per load, in load order.
fn load_registers(model: &SiteModel, field: impl Fn(crate::model::LoadValues) -> f32) -> Vec<u16> {
    (1..=model.load_count())
        .filter_map(|k| model.load(k))
        .flat_map(|load| f32_abcd(field(load)))
        .collect()
}

/// `block[addr - base .. addr - base + qty]`, or `IllegalDataAddress` if
/// any of it lies outside the block.
fn slice<T>(block: &[T], base: u16, addr: u16, qty: u16) -> Result<&[T], ExceptionCode> {
    let start = usize::from(
        addr.checked_sub(base)
            .ok_or(ExceptionCode::IllegalDataAddress)?,
    );
    let end = start + usize::from(qty);
    block
        .get(start..end)
        .ok_or(ExceptionCode::IllegalDataAddress)
}

fn check_register_quantity(qty: u16) -> Result<(), ExceptionCode> {
    if (1..=MAX_READ_REGISTERS).contains(&qty) {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataValue)
    }
}

fn check_bit_quantity(qty: u16) -> Result<(), ExceptionCode> {
    if (1..=MAX_READ_BITS).contains(&qty) {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataValue)
    }
}

fn check_setpoint(value: u16) -> Result<(), ExceptionCode> {
    if value <= 100 {
        Ok(())
    } else {
        Err(ExceptionCode::IllegalDataValue)
    }
}

/// The first load (1-based) addressed by `count` items at `addr` in a
/// block of one item per load starting at `base`.
fn load_index(addr: u16, count: usize, base: u16, loads: u16) -> Result<u16, ExceptionCode> {
    let first = addr
        .checked_sub(base)
        .ok_or(ExceptionCode::IllegalDataAddress)?;
    if usize::from(first) + count > usize::from(loads) {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(first + 1)
}

/// Like [`load_index`] for setpoint registers; the rated-power registers
/// are read-only and answer `IllegalDataAddress` like any unmapped address.
fn writable_setpoint(addr: u16, count: usize, loads: u16) -> Result<u16, ExceptionCode> {
    load_index(addr, count, SETPOINT_BASE, loads)
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "values must round-trip through registers bit-exactly"
)]
mod tests {
    use std::borrow::Cow;

    use super::*;
    use crate::encoding::{ByteOrder, Value};

    fn model() -> SiteModel {
        let mut model = SiteModel::new(3, 4, 1, 1_736_935_200_000);
        model.advance(1_736_935_200_500);
        model
    }

    fn answer(
        model: &mut SiteModel,
        unit: u8,
        request: &Request<'_>,
    ) -> Result<Response, ExceptionCode> {
        respond(model, unit, request).expect("unit exists")
    }

    fn float(words: &[u16]) -> f32 {
        f32::from_bits((u32::from(words[0]) << 16) | u32::from(words[1]))
    }

    #[test]
    fn sdm630_addresses_are_the_eastron_ones() {
        // Protocol address = register number in the SDM630 manual - 30001.
        let pinned = [
            (sdm630::PHASE_1_VOLTAGE, 30_001),
            (sdm630::PHASE_3_CURRENT, 30_011),
            (sdm630::PHASE_1_POWER, 30_013),
            (sdm630::TOTAL_POWER, 30_053),
            (sdm630::FREQUENCY, 30_071),
            (sdm630::IMPORT_ENERGY, 30_073),
            (sdm630::EXPORT_ENERGY, 30_075),
        ];
        for (address, register) in pinned {
            assert_eq!(u32::from(address), register - 30_001);
        }
    }

    #[test]
    fn meter_image_places_each_quantity() {
        let values = MeterValues {
            voltage_v: [230.5, 231.0, 229.5],
            current_a: [1.0, 2.0, 3.0],
            power_w: [230.5, 462.0, -688.5],
            total_power_w: 4.0,
            frequency_hz: 49.98,
            import_kwh: 12.5,
            export_kwh: 3.25,
        };
        let image = meter_registers(&values);
        let at = |address: u16| float(&image[usize::from(address)..]);
        assert_eq!(&image[0..2], &[0x4366, 0x8000], "230.5 V, ABCD");
        assert_eq!(at(sdm630::PHASE_2_VOLTAGE), 231.0);
        assert_eq!(at(sdm630::PHASE_3_CURRENT), 3.0);
        assert_eq!(at(sdm630::PHASE_3_POWER), -688.5);
        assert_eq!(at(sdm630::PHASE_3_POWER_FACTOR), -1.0);
        assert_eq!(at(sdm630::PHASE_3_ANGLE), 180.0);
        assert_eq!(at(sdm630::PHASE_1_APPARENT_POWER), 230.5);
        assert_eq!(at(sdm630::SUM_OF_CURRENTS), 6.0);
        assert_eq!(at(sdm630::AVERAGE_CURRENT), 2.0);
        assert_eq!(at(sdm630::TOTAL_POWER), 4.0);
        assert_eq!(at(sdm630::TOTAL_POWER_FACTOR), 1.0);
        assert_eq!(at(sdm630::FREQUENCY), 49.98);
        assert_eq!(at(sdm630::IMPORT_ENERGY), 12.5);
        assert_eq!(at(sdm630::EXPORT_ENERGY), 3.25);
        assert_eq!(&image[0x2C..0x2E], &[0, 0], "unused by the SDM630");
    }

    #[test]
    fn reads_outside_a_block_are_illegal_data_address() {
        let mut m = model();
        let cases = [
            (1, Request::ReadInputRegisters(0x004E, 4)),
            (1, Request::ReadInputRegisters(0x0050, 2)),
            (1, Request::ReadInputRegisters(LOAD_POWER_BASE + 6, 4)),
            (1, Request::ReadHoldingRegisters(0x0004, 1)),
            (1, Request::ReadHoldingRegisters(RATED_POWER_BASE + 7, 2)),
            (1, Request::ReadCoils(3, 2)),
            (1, Request::ReadDiscreteInputs(0, 1)),
            (2, Request::ReadHoldingRegisters(0, 1)),
            (2, Request::ReadCoils(0, 1)),
            (2, Request::ReadInputRegisters(0xFFFF, 1)),
            (247, Request::ReadHoldingRegisters(0x005F, 2)),
            (247, Request::ReadCoils(15, 2)),
        ];
        for (unit, request) in cases {
            assert_eq!(
                answer(&mut m, unit, &request),
                Err(ExceptionCode::IllegalDataAddress),
                "unit {unit} {request:?}"
            );
        }
    }

    #[test]
    fn quantities_out_of_range_are_illegal_data_value() {
        let mut m = model();
        for request in [
            Request::ReadInputRegisters(0, 0),
            Request::ReadInputRegisters(0, 126),
            Request::ReadCoils(0, 0),
            Request::ReadCoils(0, 2001),
            Request::WriteMultipleRegisters(0, Cow::Owned(vec![])),
        ] {
            assert_eq!(
                answer(&mut m, 1, &request),
                Err(ExceptionCode::IllegalDataValue),
                "{request:?}"
            );
        }
    }

    #[test]
    fn unsupported_functions_are_illegal_function() {
        let mut m = model();
        for unit in [1, 2, 247] {
            for request in [
                Request::ReportServerId,
                Request::MaskWriteRegister(0, 0xFFFF, 0),
                Request::Custom(0x41, Cow::Owned(vec![1, 2])),
            ] {
                assert_eq!(
                    answer(&mut m, unit, &request),
                    Err(ExceptionCode::IllegalFunction)
                );
            }
        }
    }

    #[test]
    fn unknown_units_have_no_answer() {
        let mut m = model();
        for unit in [0, 4, 100, 246, 255] {
            assert_eq!(
                respond(&mut m, unit, &Request::ReadInputRegisters(0, 2)),
                None,
                "unit {unit}"
            );
        }
    }

    #[test]
    fn coils_switch_loads_and_read_back() {
        let mut m = model();
        assert_eq!(
            answer(&mut m, 1, &Request::ReadCoils(0, 4)),
            Ok(Response::ReadCoils(vec![true; 4]))
        );
        assert_eq!(
            answer(&mut m, 1, &Request::WriteSingleCoil(2, false)),
            Ok(Response::WriteSingleCoil(2, false))
        );
        assert!(!m.load(3).unwrap().on);
        assert_eq!(
            answer(
                &mut m,
                1,
                &Request::WriteMultipleCoils(0, Cow::Owned(vec![false, false]))
            ),
            Ok(Response::WriteMultipleCoils(0, 2))
        );
        assert_eq!(
            answer(&mut m, 1, &Request::ReadCoils(0, 4)),
            Ok(Response::ReadCoils(vec![false, false, false, true]))
        );
        assert_eq!(
            answer(&mut m, 1, &Request::WriteSingleCoil(4, true)),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert_eq!(
            answer(
                &mut m,
                1,
                &Request::WriteMultipleCoils(3, Cow::Owned(vec![true, true]))
            ),
            Err(ExceptionCode::IllegalDataAddress)
        );
        assert!(!m.load(1).unwrap().on, "a refused write changes nothing");
    }

    #[test]
    fn setpoints_write_and_read_back_atomically() {
        let mut m = model();
        assert_eq!(
            answer(&mut m, 1, &Request::WriteSingleRegister(1, 40)),
            Ok(Response::WriteSingleRegister(1, 40))
        );
        assert_eq!(
            answer(
                &mut m,
                1,
                &Request::WriteMultipleRegisters(2, Cow::Owned(vec![10, 20]))
            ),
            Ok(Response::WriteMultipleRegisters(2, 2))
        );
        assert_eq!(
            answer(&mut m, 1, &Request::ReadHoldingRegisters(0, 4)),
            Ok(Response::ReadHoldingRegisters(vec![100, 40, 10, 20]))
        );
        assert_eq!(
            answer(
                &mut m,
                1,
                &Request::WriteMultipleRegisters(0, Cow::Owned(vec![50, 101]))
            ),
            Err(ExceptionCode::IllegalDataValue)
        );
        assert_eq!(m.load(1).unwrap().setpoint_percent, 100, "nothing written");
        assert_eq!(
            answer(
                &mut m,
                1,
                &Request::WriteSingleRegister(RATED_POWER_BASE, 1)
            ),
            Err(ExceptionCode::IllegalDataAddress),
            "rated power is read-only"
        );
    }

    #[test]
    fn rated_and_present_load_power_registers() {
        let mut m = model();
        let Ok(Response::ReadHoldingRegisters(rated)) = answer(
            &mut m,
            1,
            &Request::ReadHoldingRegisters(RATED_POWER_BASE, 8),
        ) else {
            panic!("rated power read failed");
        };
        let Ok(Response::ReadInputRegisters(present)) =
            answer(&mut m, 1, &Request::ReadInputRegisters(LOAD_POWER_BASE, 8))
        else {
            panic!("load power read failed");
        };
        for k in 1..=4 {
            let load = m.load(k).unwrap();
            let i = usize::from(k - 1) * 2;
            assert_eq!(float(&rated[i..]), load.rated_power_w);
            assert_eq!(float(&present[i..]), load.power_w);
        }
    }

    #[test]
    fn test_pattern_unit_serves_the_pattern_read_only() {
        let mut m = model();
        let Ok(Response::ReadInputRegisters(words)) =
            answer(&mut m, 247, &Request::ReadInputRegisters(0x0030, 2))
        else {
            panic!("read failed");
        };
        assert_eq!(
            words,
            Value::F32(test_pattern::F32).to_registers(ByteOrder::Abcd)
        );
        assert_eq!(
            answer(&mut m, 247, &Request::ReadHoldingRegisters(0, 0x60)),
            Ok(Response::ReadHoldingRegisters(
                test_pattern::registers().to_vec()
            ))
        );
        assert_eq!(
            answer(&mut m, 247, &Request::ReadDiscreteInputs(0, 16)),
            Ok(Response::ReadDiscreteInputs(
                test_pattern::DISCRETE_INPUTS.to_vec()
            ))
        );
        assert_eq!(
            answer(&mut m, 247, &Request::WriteSingleRegister(0, 1)),
            Err(ExceptionCode::IllegalDataAddress)
        );
    }
}
