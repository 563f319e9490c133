//! Golden vectors: fixed payloads committed under `tests/golden/`, so the
//! wire format cannot change by accident. Each message is checked both ways:
//! encoding it gives the committed bytes, and decoding the committed bytes
//! gives it back.
//!
//! After a deliberate format change (a new format version byte), regenerate
//! with `GRIDLINK_BLESS_GOLDEN=1 cargo test -p gridlink-protocol --test golden`
//! and review the diff.

use std::fmt::Debug;
use std::path::PathBuf;

use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, Event, EventPayloadDescriptor,
    Interval, IntervalPeriod, IsoDuration, LoadChangeCause, LoadSnapshot, LoadState, ObjectId,
    PayloadType, PayloadValue, Phase, Point, Quantity, Series, Status, TelemetryBatch, Timestamp,
    ValuesMap, VenId, WireMessage, decode, encode,
};

fn ven() -> VenId {
    VenId::new("ven-1").expect("valid")
}

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms).expect("in range")
}

fn oid(s: &str) -> ObjectId {
    ObjectId::new(s).expect("valid")
}

fn telemetry() -> TelemetryBatch {
    let t0 = 1_795_262_400_000;
    let power = Series {
        meter: "main".into(),
        quantity: Quantity::ActivePower,
        phase: Phase::Total,
        exponent: 0,
        // Regular 1 s polls, a missed poll, then one late by 3 ms.
        points: [
            (0, 1520),
            (1000, 1498),
            (2000, 1503),
            (4000, -250),
            (5003, -260),
        ]
        .into_iter()
        .map(|(dt, raw)| Point {
            ts_ms: t0 + dt,
            raw,
        })
        .collect(),
    };
    let volts = Series {
        meter: "main".into(),
        quantity: Quantity::Voltage,
        phase: Phase::L2,
        exponent: -1,
        points: vec![
            Point {
                ts_ms: t0,
                raw: 2301,
            },
            Point {
                ts_ms: t0 + 1000,
                raw: 2299,
            },
        ],
    };
    TelemetryBatch {
        ven_id: ven(),
        batch_seq: 300,
        series: vec![power, volts],
    }
}

fn command() -> Command {
    Command {
        ven_id: ven(),
        command_id: 7,
        issued_at: at(1_795_262_400_000),
        action: CommandAction::Event(Event {
            id: oid("evt-1"),
            program_id: oid("peak"),
            event_name: Some("evening peak".into()),
            priority: Some(1),
            targets: vec!["ven-1".into()],
            payload_descriptors: vec![EventPayloadDescriptor {
                payload_type: PayloadType::ImportCapacityLimit,
                units: Some("KW".into()),
                currency: None,
            }],
            interval_period: Some(IntervalPeriod {
                start: Some(at(1_795_280_400_000)),
                duration: Some(IsoDuration::from_secs(3600)),
                randomize_start: Some(IsoDuration::from_secs(300)),
            }),
            intervals: vec![
                Interval {
                    id: 0,
                    interval_period: None,
                    payloads: vec![ValuesMap {
                        payload_type: PayloadType::Simple,
                        values: vec![PayloadValue::Integer(2)],
                    }],
                },
                Interval {
                    id: 1,
                    interval_period: Some(IntervalPeriod {
                        start: Some(at(1_795_284_000_000)),
                        duration: Some(IsoDuration::from_secs(1800)),
                        randomize_start: None,
                    }),
                    payloads: vec![ValuesMap {
                        payload_type: PayloadType::ImportCapacityLimit,
                        values: vec![PayloadValue::Number(12.5)],
                    }],
                },
            ],
        }),
    }
}

fn cancel() -> Command {
    Command {
        ven_id: ven(),
        command_id: 8,
        issued_at: at(1_795_281_000_000),
        action: CommandAction::Cancel {
            event_id: oid("evt-1"),
        },
    }
}

fn ack() -> CommandAck {
    CommandAck {
        ven_id: ven(),
        command_id: 7,
        event_id: oid("evt-1"),
        state: AckState::Failed,
        at: at(1_795_280_412_345),
        reason: Some("coil 3 on unit 2: Modbus exception IllegalDataAddress".into()),
    }
}

fn status() -> Status {
    Status {
        ven_id: ven(),
        online: true,
        at: at(1_795_262_400_000),
        agent_version: "0.1.0".into(),
        backlog_batches: 12,
        dropped_readings: 0,
    }
}

fn snapshot() -> LoadSnapshot {
    LoadSnapshot {
        ven_id: ven(),
        at: at(1_795_280_401_000),
        loads: vec![
            LoadState {
                name: "hvac".into(),
                on: false,
                power_w: Some(0.0),
                setpoint: Some(24.5),
                controllable: true,
                last_change: Some(at(1_795_280_400_500)),
                cause: LoadChangeCause::Event {
                    event_id: oid("evt-1"),
                },
            },
            LoadState {
                name: "fridge".into(),
                on: true,
                power_w: None,
                setpoint: None,
                controllable: false,
                last_change: None,
                cause: LoadChangeCause::Startup,
            },
        ],
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn to_hex(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // 32 bytes a line keeps diffs readable.
    hex.chunks(32)
        .map(|c| c.join(""))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn from_hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).expect("ascii"), 16).expect("hex"))
        .collect()
}

fn check<M: WireMessage + PartialEq + Debug>(name: &str, message: &M) {
    let postcard = encode(message, Encoding::Postcard).expect("encodes");
    let json = encode(message, Encoding::Json).expect("encodes");
    let json: serde_json::Value = serde_json::from_slice(&json).expect("json");
    let json = serde_json::to_string_pretty(&json).expect("json") + "\n";
    let hex_path = golden_dir().join(format!("{name}.postcard.hex"));
    let json_path = golden_dir().join(format!("{name}.json"));
    if std::env::var_os("GRIDLINK_BLESS_GOLDEN").is_some() {
        std::fs::create_dir_all(golden_dir()).expect("mkdir");
        std::fs::write(&hex_path, to_hex(&postcard)).expect("write");
        std::fs::write(&json_path, &json).expect("write");
    }
    let committed_hex = std::fs::read_to_string(&hex_path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; bless with GRIDLINK_BLESS_GOLDEN=1",
            hex_path.display()
        )
    });
    assert_eq!(
        to_hex(&postcard),
        committed_hex,
        "{name}: postcard encoding changed; this breaks deployed agents unless the format version byte changes"
    );
    assert_eq!(
        &decode::<M>(&from_hex(&committed_hex)).expect("golden postcard decodes"),
        message
    );
    let committed_json = std::fs::read_to_string(&json_path).expect("golden json");
    assert_eq!(json, committed_json, "{name}: JSON shape changed");
    assert_eq!(
        &decode::<M>(committed_json.as_bytes()).expect("golden json decodes"),
        message
    );
}

#[test]
fn telemetry_batch() {
    check("telemetry_batch", &telemetry());
}

#[test]
fn command_event() {
    check("command_event", &command());
}

#[test]
fn command_cancel() {
    check("command_cancel", &cancel());
}

#[test]
fn command_ack() {
    check("command_ack", &ack());
}

#[test]
fn status_online() {
    check("status", &status());
}

#[test]
fn load_snapshot() {
    check("load_snapshot", &snapshot());
}

#[test]
fn telemetry_bytes_are_the_documented_layout() {
    // Spelled out once by hand, so the layout in `compact.rs` is checked
    // against something other than the encoder itself.
    let bytes = encode(&telemetry(), Encoding::Postcard).expect("encodes");
    let expected_head = [
        0x01, // format: postcard v1
        5, b'v', b'e', b'n', b'-', b'1', // ven id
        0xac, 0x02, // batch_seq 300
        2,    // two series
        4, b'm', b'a', b'i', b'n', // meter
        0,    // ActivePower
        0,    // Total
        0,    // exponent 0
    ];
    assert_eq!(&bytes[..expected_head.len()], &expected_head);
    let column = &bytes[expected_head.len() + 1..];
    let len = bytes[expected_head.len()] as usize;
    // count 5; t0 zigzag varint (6 bytes, computed independently); dod +1000 (zz 2000 = d0 0f);
    // a run of 1 zero (00 00); dod +1000 (d0 0f); dod -997 (zz 1993 = c9 0f);
    // values 1520 (zz 3040 = e0 17), -22 (2b), +5 (0a), -1753 (zz 3505 = b1 1b), -10 (13).
    let t0 = [0x80, 0x98, 0xd2, 0xdf, 0xbf, 0x68];
    let mut want = vec![5];
    want.extend_from_slice(&t0);
    want.extend_from_slice(&[
        0xd0, 0x0f, 0x00, 0x00, 0xd0, 0x0f, 0xc9, 0x0f, 0xe0, 0x17, 0x2b, 0x0a, 0xb1, 0x1b, 0x13,
    ]);
    assert_eq!(&column[..len], &want[..]);
}
