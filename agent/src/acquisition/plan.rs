//! Request planning: which read requests cover a device's points.
//!
//! Pure: points in, requests out. Points of the same register kind whose
//! registers are adjacent (or overlap, or are at most `max_gap` apart) are
//! read with one request, up to the Modbus limit of 125 registers or 2000
//! bits per request.

use crate::config::{PointConfig, RegisterKind};

/// The registers (or bits) one point occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterSpan {
    /// The data table.
    pub register: RegisterKind,
    /// First address.
    pub address: u16,
    /// Number of registers or bits, at least 1.
    pub width: u16,
}

impl RegisterSpan {
    /// The span of a configured point.
    pub fn of(point: &PointConfig) -> Self {
        Self {
            register: point.register,
            address: point.address,
            width: point.width(),
        }
    }

    fn end(self) -> u32 {
        u32::from(self.address) + u32::from(self.width)
    }
}

/// One Modbus read request: function (by register kind), first address and
/// count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadRequest {
    /// The data table, which decides the function code (0x01-0x04).
    pub register: RegisterKind,
    /// First address.
    pub address: u16,
    /// Number of registers or bits, 1 to [`RegisterKind::max_per_request`].
    pub count: u16,
}

/// Where one point's value is found in the responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Index of the request in [`Plan::requests`].
    pub request: usize,
    /// Offset of the point's first register (or bit) in that response.
    pub offset: u16,
}

/// The requests that read a device's points, and where each point is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Requests in the order they are sent: by register kind, then address.
    pub requests: Vec<ReadRequest>,
    /// One slot per point, in the order the points were given.
    pub slots: Vec<Slot>,
}

impl Plan {
    /// The indices of the points read by request `request`.
    pub fn points_of(&self, request: usize) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(move |(_, slot)| slot.request == request)
            .map(|(i, _)| i)
    }
}

/// Plans the requests for `spans`, merging neighbours that are at most
/// `max_gap` unconfigured registers (or bits) apart.
///
/// Every span must fit the address space (`address + width <= 65536`);
/// the config's validation guarantees that.
pub fn plan(spans: &[RegisterSpan], max_gap: u16) -> Plan {
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.sort_by_key(|&i| (spans[i].register, spans[i].address, spans[i].width));

    let mut requests: Vec<ReadRequest> = Vec::new();
    let mut slots = vec![
        Slot {
            request: 0,
            offset: 0,
        };
        spans.len()
    ];
    // The request being built: its table, first address and end (exclusive).
    let mut open: Option<(RegisterKind, u32, u32)> = None;
    for i in order {
        let span = spans[i];
        let start = u32::from(span.address);
        let limit = u32::from(span.register.max_per_request());
        let joins = open.is_some_and(|(kind, first, end)| {
            kind == span.register
                && start <= end + u32::from(max_gap)
                && span.end().max(end) - first <= limit
        });
        if let (true, Some((_, first, end))) = (joins, open.as_mut()) {
            *end = (*end).max(span.end());
            slots[i] = Slot {
                request: requests.len() - 1,
                offset: (start - *first) as u16,
            };
        } else {
            open = Some((span.register, start, span.end()));
            requests.push(ReadRequest {
                register: span.register,
                address: span.address,
                count: 0,
            });
            slots[i] = Slot {
                request: requests.len() - 1,
                offset: 0,
            };
        }
        if let (Some((_, first, end)), Some(last)) = (open, requests.last_mut()) {
            last.count = (end - first) as u16;
        }
    }
    Plan { requests, slots }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn span(register: RegisterKind, address: u16, width: u16) -> RegisterSpan {
        RegisterSpan {
            register,
            address,
            width,
        }
    }

    fn req(register: RegisterKind, address: u16, count: u16) -> ReadRequest {
        ReadRequest {
            register,
            address,
            count,
        }
    }

    use RegisterKind::{Coil, Discrete, Holding, Input};

    #[test]
    fn adjacent_points_merge_and_gaps_split() {
        // An SDM630-like map: f32 at 0, 2, 4 (voltages), 12 (power), then
        // frequency at 70, plus one holding register.
        let spans = [
            span(Input, 12, 2),
            span(Input, 0, 2),
            span(Input, 2, 2),
            span(Input, 4, 2),
            span(Input, 70, 2),
            span(Holding, 0, 1),
        ];
        let p = plan(&spans, 0);
        assert_eq!(
            p.requests,
            vec![
                req(Holding, 0, 1),
                req(Input, 0, 6),
                req(Input, 12, 2),
                req(Input, 70, 2)
            ]
        );
        assert_eq!(
            p.slots[0],
            Slot {
                request: 2,
                offset: 0
            }
        );
        assert_eq!(
            p.slots[3],
            Slot {
                request: 1,
                offset: 4
            }
        );
        assert_eq!(p.points_of(1).collect::<Vec<_>>(), vec![1, 2, 3]);

        // A gap of 6 registers (6..12) is bridged with max_gap 6, not 5.
        let p = plan(&spans, 6);
        assert_eq!(p.requests[1], req(Input, 0, 14));
        assert_eq!(
            p.slots[0],
            Slot {
                request: 1,
                offset: 12
            }
        );
        assert_eq!(plan(&spans, 5).requests[1], req(Input, 0, 6));
    }

    #[test]
    fn limits_split_long_runs() {
        // 70 f32 values back to back: 140 registers, more than 125.
        let spans: Vec<_> = (0..70).map(|i| span(Holding, 1000 + 2 * i, 2)).collect();
        let p = plan(&spans, 0);
        assert_eq!(
            p.requests,
            vec![req(Holding, 1000, 124), req(Holding, 1124, 16)]
        );
        // 2001 coils: 2000 + 1.
        let spans: Vec<_> = (0..2001).map(|i| span(Coil, i, 1)).collect();
        let p = plan(&spans, 0);
        assert_eq!(p.requests, vec![req(Coil, 0, 2000), req(Coil, 2000, 1)]);
    }

    #[test]
    fn overlapping_points_and_the_last_address() {
        // The same register read as two types, and a point ending at 65535.
        let spans = [
            span(Input, 10, 2),
            span(Input, 10, 1),
            span(Input, 65_532, 4),
        ];
        let p = plan(&spans, 0);
        assert_eq!(p.requests, vec![req(Input, 10, 2), req(Input, 65_532, 4)]);
        assert_eq!(
            p.slots[1],
            Slot {
                request: 0,
                offset: 0
            }
        );
        // Kinds never merge, however close.
        let p = plan(&[span(Coil, 0, 1), span(Discrete, 1, 1)], 10);
        assert_eq!(p.requests.len(), 2);
        assert!(plan(&[], 0).requests.is_empty());
    }

    fn any_kind() -> impl Strategy<Value = RegisterKind> {
        prop_oneof![Just(Coil), Just(Discrete), Just(Holding), Just(Input)]
    }

    fn any_span() -> impl Strategy<Value = RegisterSpan> {
        (
            any_kind(),
            prop_oneof![Just(1u16), Just(2), Just(4)],
            any::<u16>(),
            any::<bool>(),
        )
            .prop_map(|(register, width, address, dense)| {
                let width = if register.is_bit() { 1 } else { width };
                // Dense spans crowd a small range, so merging is exercised.
                let address = if dense { address % 300 } else { address };
                span(
                    register,
                    address.min(u16::try_from(65_536 - u32::from(width)).unwrap_or(0)),
                    width,
                )
            })
    }

    proptest! {
        #[test]
        fn every_point_is_covered_once_and_no_request_is_too_big(
            spans in prop::collection::vec(any_span(), 0..200),
            max_gap in prop_oneof![Just(0u16), 0..20u16],
        ) {
            let p = plan(&spans, max_gap);
            prop_assert_eq!(p.slots.len(), spans.len());
            for r in &p.requests {
                prop_assert!(r.count >= 1 && r.count <= r.register.max_per_request(), "{:?}", r);
                prop_assert!(u32::from(r.address) + u32::from(r.count) <= 65_536);
            }
            for (s, slot) in spans.iter().zip(&p.slots) {
                let r = p.requests[slot.request];
                prop_assert_eq!(r.register, s.register);
                prop_assert_eq!(u32::from(r.address) + u32::from(slot.offset), u32::from(s.address));
                prop_assert!(slot.offset + s.width <= r.count);
            }
            // Each request starts at a point it reads.
            for (ri, r) in p.requests.iter().enumerate() {
                prop_assert!(p.slots.iter().any(|s| s.request == ri && s.offset == 0), "{:?}", r);
            }
            // Unless points overlap, no register is read twice.
            let overlaps = |a: (RegisterKind, u16, u16), b: (RegisterKind, u16, u16)| {
                a.0 == b.0
                    && u32::from(a.1) < u32::from(b.1) + u32::from(b.2)
                    && u32::from(b.1) < u32::from(a.1) + u32::from(a.2)
            };
            let points_overlap = spans.iter().enumerate().any(|(i, a)| {
                spans[i + 1..].iter().any(|b| overlaps((a.register, a.address, a.width), (b.register, b.address, b.width)))
            });
            if !points_overlap {
                for (i, a) in p.requests.iter().enumerate() {
                    for b in &p.requests[i + 1..] {
                        prop_assert!(
                            !overlaps((a.register, a.address, a.count), (b.register, b.address, b.count)),
                            "{:?} overlaps {:?}", a, b
                        );
                    }
                }
            }
            // No run of unconfigured registers longer than max_gap is read.
            for (ri, r) in p.requests.iter().enumerate() {
                let mut covered = vec![false; usize::from(r.count)];
                for (s, slot) in spans.iter().zip(&p.slots).filter(|(_, slot)| slot.request == ri) {
                    for k in 0..s.width {
                        covered[usize::from(slot.offset + k)] = true;
                    }
                }
                let longest_gap = covered
                    .split(|&c| c)
                    .map(<[bool]>::len)
                    .max()
                    .unwrap_or(0);
                prop_assert!(longest_gap <= usize::from(max_gap), "{:?}: gap {}", r, longest_gap);
            }
        }
    }

    fn laid_out_spans() -> impl Strategy<Value = Vec<RegisterSpan>> {
        prop::collection::vec(
            (
                any_kind(),
                0..12u16,
                prop_oneof![Just(1u16), Just(2), Just(4)],
            ),
            0..200,
        )
        .prop_map(|items| {
            let mut next = [0u32; 4];
            let mut spans = Vec::new();
            for (register, gap, width) in items {
                let width = if register.is_bit() { 1 } else { width };
                let cursor = &mut next[register as usize];
                let address = *cursor + u32::from(gap);
                if address + u32::from(width) <= 65_536 {
                    spans.push(span(register, address as u16, width));
                    *cursor = address + u32::from(width);
                }
            }
            spans
        })
    }

    proptest! {
        #[test]
        fn disjoint_points_are_read_once(spans in laid_out_spans(), max_gap in 0..16u16) {
            let p = plan(&spans, max_gap);
            let total: u32 = p.requests.iter().map(|r| u32::from(r.count)).sum();
            let configured: u32 = spans.iter().map(|s| u32::from(s.width)).sum();
            let gaps_read = total - configured;
            // Everything read beyond the points is bridged gaps, each at most max_gap.
            prop_assert!(gaps_read <= u32::from(max_gap) * spans.len() as u32);
            if max_gap == 0 {
                prop_assert_eq!(total, configured);
            }
            for (i, a) in p.requests.iter().enumerate() {
                for b in &p.requests[i + 1..] {
                    let disjoint = a.register != b.register
                        || u32::from(a.address) + u32::from(a.count) <= u32::from(b.address)
                        || u32::from(b.address) + u32::from(b.count) <= u32::from(a.address);
                    prop_assert!(disjoint, "{:?} overlaps {:?}", a, b);
                }
            }
        }
    }
}
