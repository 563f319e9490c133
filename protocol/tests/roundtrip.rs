//! Property tests: every payload type survives both encodings unchanged, and
//! no input, random or mutated, makes a decoder panic.

use std::collections::BTreeMap;

use gridlink_protocol::{
    AckState, Command, CommandAck, CommandAction, Encoding, Event, EventPayloadDescriptor,
    Interval, IntervalPeriod, IsoDuration, LoadChangeCause, LoadSnapshot, LoadState, ObjectId,
    PayloadType, PayloadValue, Phase, Point, Quantity, Series, Status, TelemetryBatch, Timestamp,
    ValuesMap, VenId, WireMessage, decode, encode,
};
use proptest::prelude::*;

fn ven_id() -> impl Strategy<Value = VenId> {
    "[A-Za-z0-9:_-]{1,40}".prop_map(|s| VenId::new(s).expect("regex matches the rules"))
}

fn object_id() -> impl Strategy<Value = ObjectId> {
    "[A-Za-z0-9_-]{1,30}".prop_map(|s| ObjectId::new(s).expect("regex matches the rules"))
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_135_596_800_000i64..=253_402_300_799_999)
        .prop_map(|ms| Timestamp::from_unix_ms(ms).expect("in range"))
}

fn duration() -> impl Strategy<Value = IsoDuration> {
    prop_oneof![
        (0u64..10_000_000).prop_map(IsoDuration::from_millis),
        (0u64..u64::MAX).prop_map(IsoDuration::from_millis),
        Just(IsoDuration::INFINITE),
    ]
}

fn finite() -> impl Strategy<Value = f64> {
    prop_oneof![
        proptest::num::f64::NORMAL | proptest::num::f64::ZERO | proptest::num::f64::SUBNORMAL,
        (-1e6f64..1e6)
    ]
}

fn series() -> impl Strategy<Value = Series> {
    (
        "[A-Za-z0-9_.:-]{1,20}",
        proptest::sample::select(Quantity::ALL.to_vec()),
        proptest::sample::select(Phase::ALL.to_vec()),
        -9i8..=9,
        0i64..=253_402_300_000_000,
        prop::collection::vec((1i64..100_000, any::<i64>()), 0..200),
        any::<i64>(),
    )
        .prop_map(|(meter, quantity, phase, exponent, t0, steps, raw0)| {
            let mut points = vec![Point {
                ts_ms: t0,
                raw: raw0,
            }];
            let mut ts = t0;
            for (step, raw) in steps {
                ts += step;
                if ts > 253_402_300_799_999 {
                    break;
                }
                points.push(Point { ts_ms: ts, raw });
            }
            Series {
                meter,
                quantity,
                phase,
                exponent,
                points,
            }
        })
}

fn telemetry() -> impl Strategy<Value = TelemetryBatch> {
    (
        ven_id(),
        0..=gridlink_protocol::MAX_BATCH_SEQ,
        prop::collection::vec(series(), 1..8),
    )
        .prop_map(|(ven_id, batch_seq, series)| {
            // One series per (meter, quantity, phase).
            let unique: BTreeMap<_, _> = series
                .into_iter()
                .map(|s| ((s.meter.clone(), s.quantity, s.phase), s))
                .collect();
            TelemetryBatch {
                ven_id,
                batch_seq,
                series: unique.into_values().collect(),
            }
        })
}

fn values_map() -> impl Strategy<Value = ValuesMap> {
    prop_oneof![
        (0i64..=3).prop_map(|l| ValuesMap {
            payload_type: PayloadType::Simple,
            values: vec![PayloadValue::Integer(l)]
        }),
        finite().prop_map(|p| ValuesMap {
            payload_type: PayloadType::Price,
            values: vec![PayloadValue::Number(p)]
        }),
        (0f64..1e5).prop_map(|kw| ValuesMap {
            payload_type: PayloadType::ImportCapacityLimit,
            values: vec![PayloadValue::Number(kw)]
        }),
        (0f64..1e5).prop_map(|kw| ValuesMap {
            payload_type: PayloadType::ExportCapacityLimit,
            values: vec![PayloadValue::Number(kw)]
        }),
        (0i64..100_000).prop_map(|w| ValuesMap {
            payload_type: PayloadType::DispatchSetpoint,
            values: vec![PayloadValue::Integer(w)]
        }),
        (
            "X_[A-Z_]{1,20}",
            prop::collection::vec(
                prop_oneof![
                    any::<i64>().prop_map(PayloadValue::Integer),
                    finite().prop_map(PayloadValue::Number),
                    "[ -~]{0,20}".prop_map(PayloadValue::Text),
                    any::<bool>().prop_map(PayloadValue::Bool),
                    (finite(), finite()).prop_map(|(x, y)| PayloadValue::Point { x, y }),
                ],
                0..4
            )
        )
            .prop_map(|(t, values)| ValuesMap {
                payload_type: PayloadType::Other(t),
                values
            }),
    ]
}

fn period(require: bool) -> impl Strategy<Value = Option<IntervalPeriod>> {
    let full = (timestamp(), duration(), proptest::option::of(duration())).prop_map(|(s, d, r)| {
        Some(IntervalPeriod {
            start: Some(s),
            duration: Some(d),
            randomize_start: r,
        })
    });
    if require {
        full.boxed()
    } else {
        prop_oneof![Just(None), full].boxed()
    }
}

fn event() -> impl Strategy<Value = Event> {
    (
        object_id(),
        object_id(),
        proptest::option::of("[ -~]{0,40}"),
        proptest::option::of(any::<u32>()),
        prop::collection::vec("[ -~]{1,20}", 0..3),
        period(true),
        prop::collection::vec(
            (
                any::<i32>(),
                period(false),
                prop::collection::vec(values_map(), 0..3),
            ),
            1..4,
        ),
        proptest::option::of("[A-Z]{2,4}"),
    )
        .prop_map(
            |(id, program_id, event_name, priority, targets, interval_period, intervals, units)| {
                Event {
                    id,
                    program_id,
                    event_name,
                    priority,
                    targets,
                    payload_descriptors: vec![EventPayloadDescriptor {
                        payload_type: PayloadType::ImportCapacityLimit,
                        units,
                        currency: None,
                    }],
                    interval_period,
                    intervals: intervals
                        .into_iter()
                        .map(|(id, interval_period, payloads)| Interval {
                            id,
                            interval_period,
                            payloads,
                        })
                        .collect(),
                }
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    (
        ven_id(),
        any::<u64>(),
        timestamp(),
        prop_oneof![
            event().prop_map(CommandAction::Event),
            object_id().prop_map(|event_id| CommandAction::Cancel { event_id })
        ],
    )
        .prop_map(|(ven_id, command_id, issued_at, action)| Command {
            ven_id,
            command_id,
            issued_at,
            action,
        })
}

fn ack() -> impl Strategy<Value = CommandAck> {
    let state = proptest::sample::select(vec![
        AckState::Received,
        AckState::Scheduled,
        AckState::Active,
        AckState::Completed,
        AckState::Cancelled,
        AckState::OptedOut,
        AckState::Failed,
    ]);
    (
        ven_id(),
        any::<u64>(),
        object_id(),
        state,
        timestamp(),
        "[ -~]*[a-z][ -~]{0,40}",
    )
        .prop_map(
            |(ven_id, command_id, event_id, state, at, reason)| CommandAck {
                ven_id,
                command_id,
                event_id,
                state,
                at,
                reason: Some(reason),
            },
        )
}

fn status() -> impl Strategy<Value = Status> {
    (
        ven_id(),
        any::<bool>(),
        timestamp(),
        "[0-9.a-z-]{0,20}",
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(ven_id, online, at, agent_version, backlog_batches, dropped_readings)| Status {
                ven_id,
                online,
                at,
                agent_version,
                backlog_batches,
                dropped_readings,
            },
        )
}

fn snapshot() -> impl Strategy<Value = LoadSnapshot> {
    let cause = prop_oneof![
        Just(LoadChangeCause::Startup),
        Just(LoadChangeCause::External),
        object_id().prop_map(|event_id| LoadChangeCause::Event { event_id }),
        object_id().prop_map(|event_id| LoadChangeCause::Restore { event_id }),
    ];
    let load = (
        any::<bool>(),
        proptest::option::of(finite()),
        proptest::option::of(finite()),
        any::<bool>(),
        proptest::option::of(timestamp()),
        cause,
    );
    (ven_id(), timestamp(), prop::collection::vec(load, 0..6)).prop_map(|(ven_id, at, loads)| {
        LoadSnapshot {
            ven_id,
            at,
            loads: loads
                .into_iter()
                .enumerate()
                .map(
                    |(i, (on, power_w, setpoint, controllable, last_change, cause))| LoadState {
                        name: format!("load-{i}"),
                        on,
                        power_w,
                        setpoint,
                        controllable,
                        last_change,
                        cause,
                    },
                )
                .collect(),
        }
    })
}

fn round_trip<M: WireMessage + PartialEq + std::fmt::Debug>(
    message: &M,
) -> Result<(), TestCaseError> {
    for encoding in [Encoding::Postcard, Encoding::Json] {
        let bytes = encode(message, encoding)
            .map_err(|e| TestCaseError::fail(format!("{encoding:?}: {e}")))?;
        prop_assert_eq!(Encoding::sniff(&bytes), Some(encoding));
        let back: M =
            decode(&bytes).map_err(|e| TestCaseError::fail(format!("{encoding:?}: {e}")))?;
        prop_assert_eq!(&back, message);
    }
    Ok(())
}

/// Decoding `bytes` as every payload type returns, never panics.
fn decode_all(bytes: &[u8]) {
    let _ = decode::<TelemetryBatch>(bytes);
    let _ = decode::<Command>(bytes);
    let _ = decode::<CommandAck>(bytes);
    let _ = decode::<Status>(bytes);
    let _ = decode::<LoadSnapshot>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn telemetry_round_trips(batch in telemetry()) {
        round_trip(&batch)?;
    }

    #[test]
    fn commands_round_trip(cmd in command()) {
        round_trip(&cmd)?;
    }

    #[test]
    fn acks_round_trip(a in ack()) {
        round_trip(&a)?;
    }

    #[test]
    fn statuses_round_trip(s in status()) {
        round_trip(&s)?;
    }

    #[test]
    fn snapshots_round_trip(s in snapshot()) {
        round_trip(&s)?;
    }

    #[test]
    fn durations_and_timestamps_round_trip_as_text(d in duration(), t in timestamp()) {
        prop_assert_eq!(d.to_string().parse::<IsoDuration>(), Ok(d));
        prop_assert_eq!(t.to_string().parse::<Timestamp>(), Ok(t));
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..512), first in prop_oneof![Just(1u8), Just(b'{'), any::<u8>()]) {
        decode_all(&bytes);
        if !bytes.is_empty() {
            bytes[0] = first;
        }
        decode_all(&bytes);
    }

    #[test]
    fn mutated_payloads_never_panic(batch in telemetry(), cmd in command(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        for payload in [
            encode(&batch, Encoding::Postcard).expect("valid"),
            encode(&cmd, Encoding::Postcard).expect("valid"),
            encode(&cmd, Encoding::Json).expect("valid"),
        ] {
            let mut flipped = payload.clone();
            let i = at.index(flipped.len());
            flipped[i] = byte;
            decode_all(&flipped);
            decode_all(&payload[..cut.index(payload.len())]);
        }
    }

    #[test]
    fn split_parts_fit_and_keep_every_reading(batch in telemetry(), limit in 64usize..4096) {
        let total = batch.reading_count();
        match batch.clone().split_to_fit(limit) {
            Ok(parts) => {
                for p in &parts {
                    let bytes = encode(p, Encoding::Postcard).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert!(bytes.len() <= limit, "{} > {}", bytes.len(), limit);
                }
                prop_assert_eq!(parts.iter().map(TelemetryBatch::reading_count).sum::<usize>(), total);
            }
            // Only a single point that cannot fit on its own is refused.
            Err(gridlink_protocol::EncodeError::TooLarge { max, .. }) => prop_assert!(max < 64, "refused with budget {}", max),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
        }
    }
}
