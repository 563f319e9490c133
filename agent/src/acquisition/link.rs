//! The I/O side: one connection to a controller (a TCP endpoint or a serial
//! bus), and one poll cycle of a device over it.
//!
//! Requests on a link are strictly sequential, since `&mut self` is needed
//! for each. A time-out or transport error drops the connection (a late
//! answer must not be taken for the next request's) and the next request
//! reconnects; a Modbus exception keeps it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, sleep_until, timeout};
use tokio_modbus::client::{Client as _, Context, Writer as _};
use tokio_modbus::slave::SlaveContext as _;
use tokio_modbus::{ExceptionCode, Request, Response, Slave};

use super::DevicePlan;
use super::decode::{ValueError, decode_bit, decode_registers};
use super::plan::ReadRequest;
use crate::config::{Controller, Parity, RegisterKind, SerialSettings};
use crate::metrics::ModbusErrorKind;

/// Why a Modbus request got no data.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The device answered with a Modbus exception: it is there but said no.
    #[error("Modbus exception {0:?}")]
    Exception(ExceptionCode),
    /// No answer within the device's time-out.
    #[error("timed out after {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The TCP connection was not accepted within the time-out.
    #[error("cannot connect to {controller}: timed out after {} ms", .after.as_millis())]
    ConnectTimeout {
        /// The controller URL.
        controller: String,
        /// The time-out.
        after: Duration,
    },
    /// The TCP connection or the serial port could not be opened.
    #[error("cannot connect to {controller}: {source}")]
    Connect {
        /// The controller URL.
        controller: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The link broke mid-request, or the answer did not match the request.
    #[error("transport error: {0}")]
    Transport(#[from] tokio_modbus::Error),
    /// The answer held less data than requested.
    #[error("short response: {got} of {expected} values")]
    ShortResponse {
        /// Registers or bits requested.
        expected: usize,
        /// Registers or bits received.
        got: usize,
    },
}

impl RequestError {
    /// The metrics label: device error, time-out or transport error.
    pub fn kind(&self) -> ModbusErrorKind {
        match self {
            Self::Exception(_) => ModbusErrorKind::Exception,
            Self::Timeout(_) | Self::ConnectTimeout { .. } => ModbusErrorKind::Timeout,
            Self::Connect { .. } | Self::Transport(_) | Self::ShortResponse { .. } => {
                ModbusErrorKind::Transport
            }
        }
    }
}

/// Why a point has no value in a poll.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PointError {
    /// Its request failed (shared by every point of that request).
    #[error(transparent)]
    Request(Arc<RequestError>),
    /// Its registers did not decode to a usable value.
    #[error(transparent)]
    Value(#[from] ValueError),
}

/// The outcome of one poll cycle of one device.
#[derive(Debug)]
pub struct DevicePoll {
    /// One entry per configured point, in config order: the quantized
    /// value, or why there is none.
    pub values: Vec<Result<i64, PointError>>,
    /// Every failed request, in order.
    pub errors: Vec<Arc<RequestError>>,
    /// True if a time-out or transport error ended the cycle early; the
    /// connection was dropped and the device should back off.
    pub link_failed: bool,
}

/// Response data of one request.
enum Data {
    Words(Vec<u16>),
    Bits(Vec<bool>),
}

/// One connection to a controller, opened on first use.
pub struct Link {
    controller: Controller,
    serial: Option<SerialSettings>,
    context: Option<Context>,
    /// Serial only: when the bus was last busy, for the RTU silent interval.
    quiet_since: Option<Instant>,
}

impl Link {
    /// A link to `controller`; `serial` gives the line settings of a serial
    /// controller. Nothing is opened yet.
    pub fn new(controller: Controller, serial: Option<SerialSettings>) -> Self {
        Self {
            controller,
            serial,
            context: None,
            quiet_since: None,
        }
    }

    /// A link already connected over `transport`, an open byte stream to
    /// the controller: Modbus TCP framing for a TCP controller, RTU framing
    /// for a serial one (without the RTU silent interval). The response
    /// path without a socket or a serial port, for the fuzz target
    /// `modbus_response`. After a time-out or transport error the link
    /// reconnects to `controller` as usual.
    pub fn attached<T>(controller: Controller, transport: T) -> Self
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + std::fmt::Debug + 'static,
    {
        let context = match controller {
            Controller::Tcp { .. } => tokio_modbus::client::tcp::attach(transport),
            Controller::Serial { .. } => tokio_modbus::client::rtu::attach(transport),
        };
        Self {
            controller,
            serial: None,
            context: Some(context),
            quiet_since: None,
        }
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.context.is_some()
    }

    /// Closes the connection; the next request reopens it.
    pub fn disconnect(&mut self) {
        self.context = None;
        self.quiet_since = None;
    }

    /// The open connection, or a new one (at most `limit` to connect).
    async fn connect(&mut self, limit: Duration) -> Result<&mut Context, RequestError> {
        let context = match self.context.take() {
            Some(context) => context,
            None => open(&self.controller, self.serial, limit).await?,
        };
        Ok(self.context.insert(context))
    }

    /// Sends one read request to `unit` and waits at most `limit` for the
    /// answer. Time-outs and transport errors close the connection.
    async fn read(
        &mut self,
        unit: u8,
        request: ReadRequest,
        limit: Duration,
    ) -> Result<Data, RequestError> {
        if let (Some(settings), Some(quiet)) = (self.serial, self.quiet_since) {
            sleep_until(quiet + rtu_silent_interval(settings.baud_rate)).await;
        }
        let result = self.read_inner(unit, request, limit).await;
        if self.serial.is_some() {
            self.quiet_since = Some(Instant::now());
        }
        if let Err(e) = &result
            && e.kind() != ModbusErrorKind::Exception
        {
            self.disconnect();
        }
        result
    }

    async fn read_inner(
        &mut self,
        unit: u8,
        request: ReadRequest,
        limit: Duration,
    ) -> Result<Data, RequestError> {
        let context = self.connect(limit).await?;
        context.set_slave(Slave(unit));
        let ReadRequest {
            register,
            address,
            count,
        } = request;
        // `Client::call`, not the `Reader` methods: those assert (in debug
        // builds) that the device sent exactly `count` values, so a short
        // answer panicked instead of failing below (found by the fuzz
        // target `modbus_response`).
        let request = match register {
            RegisterKind::Coil => Request::ReadCoils(address, count),
            RegisterKind::Discrete => Request::ReadDiscreteInputs(address, count),
            RegisterKind::Holding => Request::ReadHoldingRegisters(address, count),
            RegisterKind::Input => Request::ReadInputRegisters(address, count),
        };
        let answer = timeout(limit, context.call(request))
            .await
            .map_err(|_| RequestError::Timeout(limit))??
            .map_err(RequestError::Exception)?;
        let answer = match answer {
            // Bits come in whole bytes: drop the padding, as `Reader` did.
            Response::ReadCoils(mut bits) | Response::ReadDiscreteInputs(mut bits) => {
                bits.truncate(usize::from(count));
                Data::Bits(bits)
            }
            Response::ReadHoldingRegisters(words) | Response::ReadInputRegisters(words) => {
                Data::Words(words)
            }
            // `call` refuses an answer to another function already.
            other => {
                return Err(RequestError::Transport(tokio_modbus::Error::Transport(
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("answer {other:?} does not match the request"),
                    ),
                )));
            }
        };
        let got = match &answer {
            Data::Words(w) => w.len(),
            Data::Bits(b) => b.len(),
        };
        if got < usize::from(count) {
            return Err(RequestError::ShortResponse {
                expected: usize::from(count),
                got,
            });
        }
        Ok(answer)
    }

    /// Reads `count` registers (or bits, as 0/1) of `register` kind at
    /// `address` from `unit`, waiting at most `limit`. For loads' states
    /// and power, outside the poll plan.
    pub async fn read_raw(
        &mut self,
        unit: u8,
        register: RegisterKind,
        address: u16,
        count: u16,
        limit: Duration,
    ) -> Result<Vec<u16>, RequestError> {
        let request = ReadRequest {
            register,
            address,
            count,
        };
        match self.read(unit, request, limit).await? {
            Data::Words(words) => Ok(words),
            Data::Bits(bits) => Ok(bits.into_iter().map(u16::from).collect()),
        }
    }

    /// Write Single Coil (0x05) to `unit`, waiting at most `limit`. A
    /// time-out or transport error closes the connection; an exception
    /// keeps it.
    pub async fn write_coil(
        &mut self,
        unit: u8,
        address: u16,
        on: bool,
        limit: Duration,
    ) -> Result<(), RequestError> {
        self.write(unit, limit, |context| {
            Box::pin(async move { context.write_single_coil(address, on).await })
        })
        .await
    }

    /// Write Single Register (0x06) to `unit`, waiting at most `limit`.
    pub async fn write_register(
        &mut self,
        unit: u8,
        address: u16,
        value: u16,
        limit: Duration,
    ) -> Result<(), RequestError> {
        self.write(unit, limit, |context| {
            Box::pin(async move { context.write_single_register(address, value).await })
        })
        .await
    }

    async fn write<F>(&mut self, unit: u8, limit: Duration, op: F) -> Result<(), RequestError>
    where
        F: for<'c> FnOnce(
            &'c mut Context,
        ) -> std::pin::Pin<
            Box<
                dyn std::future::Future<
                        Output = Result<Result<(), ExceptionCode>, tokio_modbus::Error>,
                    > + Send
                    + 'c,
            >,
        >,
    {
        if let (Some(settings), Some(quiet)) = (self.serial, self.quiet_since) {
            sleep_until(quiet + rtu_silent_interval(settings.baud_rate)).await;
        }
        let result = async {
            let context = self.connect(limit).await?;
            context.set_slave(Slave(unit));
            timeout(limit, op(context))
                .await
                .map_err(|_| RequestError::Timeout(limit))??
                .map_err(RequestError::Exception)
        }
        .await;
        if self.serial.is_some() {
            self.quiet_since = Some(Instant::now());
        }
        if let Err(e) = &result
            && e.kind() != ModbusErrorKind::Exception
        {
            self.disconnect();
        }
        result
    }

    /// Reads every point of `device` once: its requests in order, each
    /// with the device's time-out. An exception fails that request's
    /// points and the cycle goes on; a time-out or transport error fails
    /// the rest of the cycle.
    pub async fn poll(&mut self, device: &DevicePlan) -> DevicePoll {
        let mut values: Vec<Option<Result<i64, PointError>>> = vec![None; device.points.len()];
        let mut errors = Vec::new();
        let mut link_failed = false;
        for (index, &request) in device.plan.requests.iter().enumerate() {
            match self.read(device.unit_id, request, device.timeout).await {
                Ok(data) => {
                    for p in device.plan.points_of(index) {
                        let point = &device.points[p];
                        let offset = usize::from(device.plan.slots[p].offset);
                        let value = match &data {
                            Data::Words(words) => decode_registers(point, &words[offset..]),
                            Data::Bits(bits) => decode_bit(point, bits[offset]),
                        };
                        values[p] = Some(value.map_err(PointError::Value));
                    }
                }
                Err(error) => {
                    let error = Arc::new(error);
                    let fatal = error.kind() != ModbusErrorKind::Exception;
                    // A fatal error also fails the requests not sent.
                    let failed = if fatal {
                        index..device.plan.requests.len()
                    } else {
                        index..index + 1
                    };
                    for r in failed {
                        for p in device.plan.points_of(r) {
                            values[p] = Some(Err(PointError::Request(Arc::clone(&error))));
                        }
                    }
                    errors.push(error);
                    if fatal {
                        link_failed = true;
                        break;
                    }
                }
            }
        }
        DevicePoll {
            values: values
                .into_iter()
                .map(|v| v.expect("the plan covers every point"))
                .collect(),
            errors,
            link_failed,
        }
    }
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("controller", &self.controller)
            .field("serial", &self.serial)
            .field("connected", &self.context.is_some())
            .finish_non_exhaustive()
    }
}

/// Opens a connection to `controller`: TCP with a time-out, or the serial port.
async fn open(
    controller: &Controller,
    serial: Option<SerialSettings>,
    limit: Duration,
) -> Result<Context, RequestError> {
    let connect_error = |source| RequestError::Connect {
        controller: controller.to_string(),
        source,
    };
    match controller {
        Controller::Tcp { host, port } => {
            let stream = timeout(
                limit,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            .map_err(|_| RequestError::ConnectTimeout {
                controller: controller.to_string(),
                after: limit,
            })?
            .map_err(connect_error)?;
            stream.set_nodelay(true).map_err(connect_error)?;
            Ok(tokio_modbus::client::tcp::attach(stream))
        }
        Controller::Serial { path } => {
            let builder = serial_builder(&path.to_string_lossy(), serial.unwrap_or_default());
            let port = tokio_serial::SerialStream::open(&builder)
                .map_err(|e| connect_error(std::io::Error::from(e)))?;
            Ok(tokio_modbus::client::rtu::attach(port))
        }
    }
}

fn serial_builder(path: &str, settings: SerialSettings) -> tokio_serial::SerialPortBuilder {
    let data_bits = match settings.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match settings.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let stop_bits = if settings.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    tokio_serial::new(path, settings.baud_rate)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
}

/// The RTU silent interval between frames: 3.5 character times (11 bits
/// each), and 1.75 ms above 19200 baud, as the Modbus serial line spec says.
pub fn rtu_silent_interval(baud_rate: u32) -> Duration {
    if baud_rate > 19_200 || baud_rate == 0 {
        Duration::from_micros(1750)
    } else {
        Duration::from_micros(38_500_000 / u64::from(baud_rate))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// The fuzz target `modbus_response`'s device: every point type and
    /// byte order, in four requests (coil 0, discrete 0, holding 0..20,
    /// input 100..102).
    const FUZZ_DEVICE: &str = r#"ven_id = "ven-1"
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

    /// One poll of [`FUZZ_DEVICE`] against a peer that answers as the fuzz
    /// target's input says: a framing byte (low bit: 0 TCP, 1 RTU), then
    /// `[length][bytes]` per request.
    async fn poll_fuzz_input(input: &[u8]) -> DevicePoll {
        let config = crate::config::parse(FUZZ_DEVICE, "fuzz.toml").unwrap();
        let device = DevicePlan::new(&config.devices[0]);
        let (framing, mut rest) = input.split_first().unwrap();
        let mut chunks = Vec::new();
        while let Some((&len, tail)) = rest.split_first() {
            let (chunk, tail) = tail.split_at(usize::from(len).min(tail.len()));
            chunks.push(chunk.to_vec());
            rest = tail;
        }
        let controller = if framing & 1 == 0 {
            config.devices[0].controller.clone()
        } else {
            Controller::Serial {
                path: "/dev/ttyFUZZ".into(),
            }
        };
        let (client, mut server) = tokio::io::duplex(1024);
        let peer = tokio::spawn(async move {
            let mut request = [0_u8; 512];
            for chunk in chunks {
                if matches!(server.read(&mut request).await, Ok(0) | Err(_)) {
                    return;
                }
                if server.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let mut link = Link::attached(controller, client);
        let poll = link.poll(&device).await;
        drop(link);
        peer.await.unwrap();
        poll
    }

    /// Fuzz crash: 2 holding registers in answer to a read of 20 panicked
    /// in tokio-modbus's `Reader` (a debug assertion) instead of being a
    /// short response.
    #[tokio::test]
    async fn fuzz_short_holding_answer_is_a_short_response() {
        let input = b"\x00\x0a\x00\x00\x00\x00\x00\x04\x01\x01\x01\x01\x0a\x00\x01\x00\x00\x00\x04\x01\x02\x01\x00\x0d\x00\x02\x00\x00\x00\x07\x01\x03\x04\x00\x01\x00\x02\x0d\x00\x03\x00\x00\x00\x07\x01\x04\x04\xff\xff\xff\x7f";
        let poll = poll_fuzz_input(input).await;
        assert!(poll.link_failed);
        assert!(poll.values[0].is_ok(), "the coil was read");
        assert!(
            matches!(
                poll.errors[..],
                [ref e] if matches!(**e, RequestError::ShortResponse { expected: 20, got: 2 })
            ),
            "{:?}",
            poll.errors
        );
    }

    #[test]
    fn silent_interval() {
        assert_eq!(rtu_silent_interval(9600), Duration::from_micros(4010));
        assert_eq!(rtu_silent_interval(19_200), Duration::from_micros(2005));
        assert_eq!(rtu_silent_interval(115_200), Duration::from_micros(1750));
    }

    #[test]
    fn error_kinds_and_messages() {
        let e = RequestError::Exception(ExceptionCode::IllegalDataAddress);
        assert_eq!(e.kind(), ModbusErrorKind::Exception);
        assert_eq!(e.to_string(), "Modbus exception IllegalDataAddress");
        let e = RequestError::Timeout(Duration::from_secs(1));
        assert_eq!(e.kind(), ModbusErrorKind::Timeout);
        assert_eq!(e.to_string(), "timed out after 1000 ms");
        let e = RequestError::Connect {
            controller: "tcp://127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        assert_eq!(e.kind(), ModbusErrorKind::Transport);
        assert!(
            e.to_string()
                .starts_with("cannot connect to tcp://127.0.0.1:1: "),
            "{e}"
        );
        assert_eq!(
            RequestError::ShortResponse {
                expected: 2,
                got: 1
            }
            .kind(),
            ModbusErrorKind::Transport
        );
        let e = RequestError::ConnectTimeout {
            controller: "tcp://10.9.9.9:502".into(),
            after: Duration::from_millis(300),
        };
        assert_eq!(e.kind(), ModbusErrorKind::Timeout);
        assert_eq!(
            e.to_string(),
            "cannot connect to tcp://10.9.9.9:502: timed out after 300 ms"
        );
    }
}
