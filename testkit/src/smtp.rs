//! An SMTP sink on 127.0.0.1: speaks enough of RFC 5321 (`EHLO`/`HELO`,
//! `MAIL FROM`, `RCPT TO`, `DATA`, `RSET`, `NOOP`, `QUIT`) over TCP for a
//! client to deliver mail, and records every message (envelope and
//! content, dot-stuffing undone) instead of forwarding it.
//!
//! ```no_run
//! # async fn demo() {
//! use std::time::Duration;
//! use gridlink_testkit::smtp::SmtpSink;
//!
//! let sink = SmtpSink::start().await;
//! // ... send mail to 127.0.0.1:sink.port() ...
//! let mail = &sink.wait_for(1, Duration::from_secs(60)).await[0];
//! assert!(mail.header("Subject").is_some());
//! # }
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Longest message kept.
const MAX_MESSAGE: usize = 4 << 20;

/// One message as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMail {
    /// The `EHLO`/`HELO` argument.
    pub helo: String,
    /// The `MAIL FROM` address (without `<>`).
    pub from: String,
    /// The `RCPT TO` addresses.
    pub to: Vec<String>,
    /// The content (headers and body) with CRLF line ends, without the
    /// final `.`, dot-stuffing undone.
    pub data: String,
}

impl ReceivedMail {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let head = self.data.split("\r\n\r\n").next()?;
        head.split("\r\n").find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The body: what follows the first empty line.
    pub fn body(&self) -> &str {
        self.data
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
    }
}

/// The sink; stops when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    port: u16,
    messages: Arc<Mutex<Vec<ReceivedMail>>>,
    task: JoinHandle<()>,
}

impl SmtpSink {
    /// Listens on a free port of 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the SMTP sink");
        let port = listener.local_addr().expect("its address").port();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&messages);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let messages = Arc::clone(&shared);
                tokio::spawn(async move {
                    let _ = session(stream, &messages).await;
                });
            }
        });
        Self {
            port,
            messages,
            task,
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message so far.
    pub fn messages(&self) -> Vec<ReceivedMail> {
        self.messages.lock().expect("sink state").clone()
    }

    /// Waits until at least `n` messages arrived; panics after `timeout`
    /// (a hang guard).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= n {
                return messages;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} of {n} messages after {timeout:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn address(argument: &str) -> String {
    let argument = argument.trim();
    argument
        .strip_prefix('<')
        .and_then(|a| a.split('>').next())
        .unwrap_or(argument)
        .to_owned()
}

async fn session(stream: TcpStream, messages: &Mutex<Vec<ReceivedMail>>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 gridlink-testkit SMTP sink\r\n")
        .await?;
    let mut mail = ReceivedMail {
        helo: String::new(),
        from: String::new(),
        to: Vec::new(),
        data: String::new(),
    };
    let mut line = String::new();
    loop {
        line.clear();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end();
        let upper = command.to_ascii_uppercase();
        let answer: &[u8] = if upper.starts_with("EHLO ") || upper.starts_with("HELO ") {
            command[5..].trim().clone_into(&mut mail.helo);
            if upper.starts_with("EHLO") {
                b"250-gridlink-testkit\r\n250 8BITMIME\r\n"
            } else {
                b"250 gridlink-testkit\r\n"
            }
        } else if let Some(arg) = upper.strip_prefix("MAIL FROM:").map(|_| &command[10..]) {
            mail.from = address(arg);
            mail.to.clear();
            b"250 OK\r\n"
        } else if let Some(arg) = upper.strip_prefix("RCPT TO:").map(|_| &command[8..]) {
            mail.to.push(address(arg));
            b"250 OK\r\n"
        } else if upper == "DATA" {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if read.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                let content = line.strip_prefix('.').unwrap_or(&line);
                if data.len() < MAX_MESSAGE {
                    data.push_str(content);
                }
            }
            mail.data = data.strip_suffix("\r\n").unwrap_or(&data).to_owned();
            messages.lock().expect("sink state").push(mail.clone());
            b"250 OK queued\r\n"
        } else if upper == "RSET" {
            mail.from.clear();
            mail.to.clear();
            b"250 OK\r\n"
        } else if upper == "NOOP" {
            b"250 OK\r\n"
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        write.write_all(answer).await?;
    }
}
