//! Modbus responses as the agent reads them: one poll of a configured
//! device over `gridlink_agent::acquisition::Link`, whose peer answers
//! each request with bytes from the input. The bytes go through
//! tokio-modbus's TCP or RTU client framing, the agent's response checks
//! and its register decoding of every point type and byte order.
//!
//! Input: one byte whose low bit chooses the framing (0 TCP, 1 RTU), then
//! one `[length][bytes]` chunk per request, sent after that request
//! arrives; after the last chunk the peer closes the stream. The device's
//! requests, in order: coil 0 (1 bit), discrete input 0 (1 bit), holding
//! registers 0..20, input registers 100..102, unit id 1.
#![no_main]

use std::sync::OnceLock;

use gridlink_agent::acquisition::{DevicePlan, Link};
use gridlink_agent::config::{self, Controller};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::runtime::Runtime;

/// One device of every point type and byte order, in four requests.
const CONFIG: &str = r#"ven_id = "ven-1"

[mqtt]
host = "broker.example.com"

[buffer]
path = "/var/lib/gridlink/buffer"

[[devices]]
name = "main"
controller = "tcp://127.0.0.1:502"
unit_id = 1
points = [
  { register = "coil", address = 0, quantity = "power_factor" },
  { register = "discrete", address = 0, quantity = "current", phase = "L2" },
  { register = "holding", address = 0, type = "u16", byte_order = "AB", quantity = "active_power" },
  { register = "holding", address = 1, type = "i16", byte_order = "BA", quantity = "reactive_power" },
  { register = "holding", address = 2, type = "u32", byte_order = "CDAB", quantity = "apparent_power" },
  { register = "holding", address = 4, type = "i32", byte_order = "DCBA", quantity = "current", phase = "L1", scale = 0.001 },
  { register = "holding", address = 6, type = "f32", quantity = "voltage", phase = "L1" },
  { register = "holding", address = 8, type = "u64", byte_order = "BADC", quantity = "energy_import", scale = 1000.0 },
  { register = "holding", address = 12, type = "i64", byte_order = "GHEFCDAB", quantity = "energy_export", exponent = 3 },
  { register = "holding", address = 16, type = "f64", quantity = "frequency", scale = 0.01 },
  { register = "input", address = 100, type = "f32", byte_order = "DCBA", quantity = "voltage", phase = "L2" },
]
"#;

/// The device's plan, and the runtime: current-thread with a paused
/// clock, so a response that never completes times out at once.
fn setup() -> &'static (DevicePlan, Runtime) {
    static SETUP: OnceLock<(DevicePlan, Runtime)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let config = config::parse(CONFIG, "fuzz.toml").expect("the fuzz device config is valid");
        let plan = DevicePlan::new(&config.devices[0]);
        assert_eq!(plan.plan.requests.len(), 4, "{:?}", plan.plan.requests);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a current-thread runtime");
        (plan, runtime)
    })
}

/// The device's side: a chunk of the input after each request.
async fn peer(mut stream: DuplexStream, chunks: Vec<Vec<u8>>) {
    let mut request = [0_u8; 512];
    for chunk in chunks {
        match stream.read(&mut request).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        if stream.write_all(&chunk).await.is_err() {
            return;
        }
    }
}

fuzz_target!(|bytes: &[u8]| {
    let Some((&framing, mut rest)) = bytes.split_first() else {
        return;
    };
    let mut chunks = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
        chunks.push(chunk.to_vec());
        rest = tail;
    }
    let controller = if framing & 1 == 0 {
        Controller::Tcp {
            host: "127.0.0.1".into(),
            port: 502,
        }
    } else {
        Controller::Serial {
            path: "/dev/ttyFUZZ".into(),
        }
    };
    let (plan, runtime) = setup();
    runtime.block_on(async {
        let (client, server) = tokio::io::duplex(1024);
        let device = tokio::spawn(peer(server, chunks));
        let mut link = Link::attached(controller, client);
        let poll = link.poll(plan).await;
        assert_eq!(poll.values.len(), plan.points.len());
        drop(link);
        let _ = device.await;
    });
});
