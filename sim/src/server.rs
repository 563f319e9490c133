//! The Modbus TCP and RTU servers around a [`Site`].
//!
//! Both are tokio-modbus servers with one service that answers from the
//! site's register maps. Transport behaviour:
//!
//! * Unknown unit ids: on TCP the simulator acts as a gateway and answers
//!   exception 0x0B, *gateway target device failed to respond*; on RTU no
//!   device has that address, so nothing answers (as on a real bus).
//! * Silent units ([`SiteConfig::silent_units`](crate::SiteConfig)) never
//!   answer on either transport; the TCP connection stays open and serves
//!   the next request.
//! * Delay ([`SiteConfig::delay`](crate::SiteConfig)): each answer is
//!   computed and sent that long after its request. tokio-modbus handles
//!   one request at a time per connection (per serial port on RTU), so a
//!   delay also holds back the requests queued behind it, as on a device.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, TcpStream};
use tokio_modbus::server::Service;
use tokio_modbus::{ExceptionCode, Request, Response, SlaveRequest};
use tracing::{debug, info, warn};

use crate::registers::respond;
use crate::site::Site;

/// How long [`serve_rtu`] waits before reopening a serial port after an error.
const REOPEN_DELAY: Duration = Duration::from_millis(200);

/// Which transport a request came over: decides what an unknown unit gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Rtu,
}

/// Why the RTU server stopped.
#[derive(Debug, thiserror::Error)]
pub enum RtuError {
    /// The serial device could not be opened.
    #[error("cannot open serial port {path}: {source}")]
    Open {
        /// The device path.
        path: PathBuf,
        /// What the serial driver said.
        #[source]
        source: tokio_serial::Error,
    },
}

/// The tokio-modbus service: one per TCP connection or serial port.
#[derive(Debug, Clone)]
struct SiteService {
    site: Site,
    transport: Transport,
}

type Answer = Result<Option<Response>, ExceptionCode>;

impl Service for SiteService {
    type Request = SlaveRequest<'static>;
    type Response = Option<Response>;
    type Exception = ExceptionCode;
    type Future = Pin<Box<dyn Future<Output = Answer> + Send>>;

    fn call(&self, request: Self::Request) -> Self::Future {
        let site = self.site.clone();
        let transport = self.transport;
        Box::pin(async move { answer(&site, transport, request.slave, &request.request).await })
    }
}

async fn answer(site: &Site, transport: Transport, unit: u8, request: &Request<'static>) -> Answer {
    let config = site.config();
    if config.silent_units.contains(&unit) {
        debug!(unit, ?request, "silent unit: no answer");
        return Ok(None);
    }
    if !config.delay.is_zero() {
        tokio::time::sleep(config.delay).await;
    }
    let outcome = respond(&mut site.model_at(SystemTime::now()), unit, request);
    let answer = match (outcome, transport) {
        (Some(Ok(response)), _) => Ok(Some(response)),
        (Some(Err(exception)), _) => Err(exception),
        (None, Transport::Tcp) => Err(ExceptionCode::GatewayTargetDevice),
        (None, Transport::Rtu) => {
            debug!(unit, ?request, "no such unit on the bus: no answer");
            return Ok(None);
        }
    };
    site.count_served();
    match &answer {
        Ok(_) => debug!(unit, ?request, "answered"),
        Err(exception) => debug!(unit, ?request, %exception, "answered with an exception"),
    }
    answer
}

/// Serves `site` over Modbus TCP on `listener`, one task per connection.
///
/// Runs until the future is dropped (which also ends every connection) and
/// returns only if accepting a connection fails.
pub async fn serve_tcp(site: Site, listener: TcpListener) -> io::Result<()> {
    let server = tokio_modbus::server::tcp::Server::new(listener);
    let on_connected = |stream: TcpStream, peer: SocketAddr| {
        let service = SiteService {
            site: site.clone(),
            transport: Transport::Tcp,
        };
        async move {
            debug!(%peer, "Modbus TCP client connected");
            Ok(Some((service, stream)))
        }
    };
    server
        .serve(&on_connected, |err| {
            debug!(%err, "Modbus TCP connection closed with an error");
        })
        .await
}

/// Serves `site` over Modbus RTU on the serial device `path` at `baud`
/// (8 data bits, no parity, 1 stop bit).
///
/// Runs until the future is dropped. tokio-modbus ends an RTU server on a
/// frame it cannot decode (an unknown function code, a malformed PDU) or
/// when the port closes; this function then reopens the port after a short
/// pause and carries on, and returns only if the port cannot be opened.
pub async fn serve_rtu(site: Site, path: &Path, baud: u32) -> Result<(), RtuError> {
    loop {
        let builder = tokio_serial::new(path.to_string_lossy(), baud);
        let serial =
            tokio_serial::SerialStream::open(&builder).map_err(|source| RtuError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        info!(path = %path.display(), baud, "serving Modbus RTU");
        let service = SiteService {
            site: site.clone(),
            transport: Transport::Rtu,
        };
        match tokio_modbus::server::rtu::Server::new(serial)
            .serve_forever(service)
            .await
        {
            Ok(()) => warn!(path = %path.display(), "serial port closed; reopening"),
            Err(err) => warn!(path = %path.display(), %err, "Modbus RTU server stopped; reopening"),
        }
        tokio::time::sleep(REOPEN_DELAY).await;
    }
}
