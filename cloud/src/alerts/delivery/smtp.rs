//! E-mail delivery: a minimal SMTP client (RFC 5321) over TCP, enough for a
//! relay that accepts mail from this host: `EHLO`, `MAIL FROM`, `RCPT TO`,
//! `DATA`, `QUIT`. No `STARTTLS` and no `AUTH`: point it at a local MTA
//! (postfix, the cloud host's relay) that forwards with TLS and
//! credentials. One message per notification, plain text (UTF-8, 8bit).

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::DeliveryError;
use crate::alerts::EmailSettings;
use crate::store::alerts::Alert;

/// Sends notifications by e-mail.
#[derive(Debug, Clone)]
pub struct SmtpSender {
    settings: EmailSettings,
}

/// The subject and body of a notification e-mail.
pub fn compose(kind: &str, alert: &Alert) -> (String, String) {
    let subject = format!(
        "[gridlink] {} {} {}: {}",
        kind.to_uppercase(),
        alert.severity.as_str(),
        alert.rule.as_str(),
        alert.subject
    );
    let details = serde_json::to_string_pretty(&alert.details).unwrap_or_else(|_| "{}".to_owned());
    let body = format!(
        "{}\n\nalert:    {}\nrule:     {}\nseverity: {}\nsubject:  {}\nstate:    {}\nopened:   {}\nresolved: {}\n\ndetails:\n{}\n",
        alert.message,
        alert.id,
        alert.rule.as_str(),
        alert.severity.as_str(),
        alert.subject,
        alert.state.as_str(),
        rfc3339(alert.opened_ms),
        alert.resolved_ms.map_or_else(|| "-".to_owned(), rfc3339),
        details,
    );
    (one_line(&subject), body)
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A header value without line breaks (no header injection).
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The whole message, headers and body, with CRLF line ends and
/// dot-stuffing, ending in `CRLF . CRLF`.
pub fn message(
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
    message_id: &str,
    now_ms: i64,
) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc2822)
                .ok()
        })
        .unwrap_or_default();
    let mut text = format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nDate: {date}\r\nMessage-ID: <{message_id}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Transfer-Encoding: 8bit\r\n\r\n",
        to.join(", ")
    );
    for line in body.lines() {
        if line.starts_with('.') {
            text.push('.');
        }
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str(".\r\n");
    text
}

impl SmtpSender {
    /// A sender for `settings`.
    pub fn new(settings: EmailSettings) -> Self {
        Self { settings }
    }

    /// Sends one notification; `Err` with the reason (connection, or the
    /// server's reply to the step that failed).
    pub async fn send(&self, kind: &str, alert: &Alert, now_ms: i64) -> Result<(), DeliveryError> {
        let (subject, body) = compose(kind, alert);
        let message_id = format!("alert-{}-{kind}-{now_ms}@gridlink", alert.id);
        let text = message(
            &self.settings.from,
            &self.settings.to,
            &subject,
            &body,
            &message_id,
            now_ms,
        );
        tokio::time::timeout(self.settings.timeout, self.transaction(&text))
            .await
            .map_err(|_| DeliveryError::SmtpTimeout(self.settings.timeout))?
    }

    async fn transaction(&self, text: &str) -> Result<(), DeliveryError> {
        let stream = TcpStream::connect((self.settings.host.as_str(), self.settings.port))
            .await
            .map_err(|source| DeliveryError::SmtpConnect {
                host: self.settings.host.clone(),
                port: self.settings.port,
                source,
            })?;
        let (read, mut write) = stream.into_split();
        let mut read = BufReader::new(read);
        expect(&mut read, "greeting", 220).await?;
        let hello = format!("EHLO {}\r\n", hello_name());
        command(&mut read, &mut write, &hello, "EHLO", 250).await?;
        let from = format!("MAIL FROM:<{}>\r\n", self.settings.from);
        command(&mut read, &mut write, &from, "MAIL FROM", 250).await?;
        for to in &self.settings.to {
            let rcpt = format!("RCPT TO:<{to}>\r\n");
            command(&mut read, &mut write, &rcpt, "RCPT TO", 250).await?;
        }
        command(&mut read, &mut write, "DATA\r\n", "DATA", 354).await?;
        command(&mut read, &mut write, text, "message", 250).await?;
        // The message is accepted; a failing QUIT changes nothing.
        let _ = command(&mut read, &mut write, "QUIT\r\n", "QUIT", 221).await;
        Ok(())
    }
}

fn hello_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        })
        .unwrap_or_else(|| "localhost".to_owned())
}

async fn command<R, W>(
    read: &mut BufReader<R>,
    write: &mut W,
    line: &str,
    step: &'static str,
    code: u16,
) -> Result<(), DeliveryError>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    write
        .write_all(line.as_bytes())
        .await
        .map_err(|source| DeliveryError::SmtpIo { step, source })?;
    write
        .flush()
        .await
        .map_err(|source| DeliveryError::SmtpIo { step, source })?;
    expect(read, step, code).await
}

/// Reads one (possibly multi-line) reply and checks its code (a 2xx code
/// of the same class is accepted where 250 is expected, e.g. 251).
async fn expect<R: tokio::io::AsyncRead + Unpin>(
    read: &mut BufReader<R>,
    step: &'static str,
    code: u16,
) -> Result<(), DeliveryError> {
    let mut reply = String::new();
    loop {
        let mut line = String::new();
        let n = read
            .read_line(&mut line)
            .await
            .map_err(|source| DeliveryError::SmtpIo { step, source })?;
        if n == 0 {
            return Err(DeliveryError::SmtpClosed(step));
        }
        if reply.len() < 1024 {
            reply.push_str(line.trim_end());
            reply.push(' ');
        }
        // "250-..." continues, "250 ..." ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    }
    let got: u16 = reply.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
    let ok = got == code || (code == 250 && (200..300).contains(&got));
    if ok {
        Ok(())
    } else {
        Err(DeliveryError::SmtpRefused {
            step,
            reply: reply.trim_end().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_dot_stuffed_and_headers_single_line() {
        let text = message(
            "a@x.org",
            &["b@y.org".into(), "c@z.org".into()],
            &one_line("hi\r\nBcc: evil@x.org"),
            "line 1\n.hidden\nlast",
            "id@gridlink",
            0,
        );
        assert!(text.contains("To: b@y.org, c@z.org\r\n"));
        assert!(text.contains("Subject: hi  Bcc: evil@x.org\r\n"));
        assert!(text.contains("\r\n..hidden\r\n"));
        assert!(text.ends_with("last\r\n.\r\n"));
        assert!(
            text.contains("Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"),
            "{text}"
        );
    }
}
