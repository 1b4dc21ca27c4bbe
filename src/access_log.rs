//! The access log: one Combined Log Format line per response (what nginx and lighttpd write,
//! so log analysers and fail2ban read it as is), to stdout, to a file that SIGHUP reopens (so
//! logrotate can move it away), or nowhere. Diagnostics never come here: they go to stderr
//! through `log`/env_logger.
//!
//! The event loop buffers lines and writes them once per loop turn ([`AccessLog::flush`]), so
//! a busy turn costs one `write` instead of one per response; the blocking engines write each
//! line as it is made.

use std::fmt::{Display, Write as _};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use log::debug;

use crate::http::forwarded::{IpBlock, client_address};
use crate::http::{Request, http_date};
use crate::output::Sent;

/// Buffered lines are written once they reach this size, even mid-turn.
const FLUSH_AT_BYTES: usize = 32 * 1024;

/// The line format (`--access-log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Combined,
    /// Apache's `vhost_combined`: `%v:%p ` before the Combined line.
    #[value(name = "vhost_combined")]
    VhostCombined,
}

/// What an access-log line says about a response; made only while a log is on.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// For `vhost_combined`: the site's name (or, for a nameless site, the request's host) and
    /// the port the connection came in on.
    pub server: Option<(Option<String>, u16)>,
    /// The client: the peer, or the one a trusted proxy names (see [`AccessLog::client`]).
    pub client: Option<IpAddr>,
    /// `METHOD target VERSION`, or `-` when the head could not be parsed.
    pub request_line: String,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    /// The user whose credentials `--auth-file` accepted (never the password).
    pub user: Option<String>,
    /// When the request was answered (the loop turn's clock).
    pub received: SystemTime,
    pub status: u16,
}

#[derive(Debug)]
pub struct AccessLog {
    /// The mutex is uncontended in the event loop and lets threaded engines share one log.
    sink: Mutex<Sink>,
    /// Hold lines until `flush` (the event loop) instead of writing each at once.
    buffered: bool,
    /// The sink is not `Off` (fixed at start, so asking costs no lock on the hot path).
    writes_lines: bool,
    format: LogFormat,
    /// `--trusted-proxies`.
    trusted_proxies: Vec<IpBlock>,
}

#[derive(Debug)]
enum Sink {
    Off,
    Stdout { pending: Vec<u8> },
    File { path: PathBuf, file: File, pending: Vec<u8> },
}

/// Where `--access-log` sends lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Off,
    Stdout,
    File(PathBuf),
}

impl Destination {
    /// `-` is stdout, `off` is none, anything else a file path.
    pub fn parse(text: &str) -> Destination {
        match text {
            "-" => Destination::Stdout,
            "off" => Destination::Off,
            path => Destination::File(PathBuf::from(path)),
        }
    }
}

impl AccessLog {
    pub fn off() -> AccessLog {
        AccessLog::with_sink(Sink::Off, false)
    }

    /// Opens the destination (a file is created if missing and appended to). `buffered` lines
    /// wait for [`AccessLog::flush`].
    pub fn open(destination: &Destination, buffered: bool) -> io::Result<AccessLog> {
        let sink = match destination {
            Destination::Off => Sink::Off,
            Destination::Stdout => Sink::Stdout { pending: Vec::new() },
            Destination::File(path) => {
                Sink::File { path: path.clone(), file: open_append(path)?, pending: Vec::new() }
            }
        };
        Ok(AccessLog::with_sink(sink, buffered))
    }

    fn with_sink(sink: Sink, buffered: bool) -> AccessLog {
        let writes_lines = !matches!(sink, Sink::Off);
        let (format, trusted_proxies) = (LogFormat::Combined, Vec::new());
        AccessLog { sink: Mutex::new(sink), buffered, writes_lines, format, trusted_proxies }
    }

    /// Lines in `format`, naming clients behind `trusted_proxies`, from now on (at start, and
    /// on SIGHUP).
    pub fn set_format(&mut self, format: LogFormat, trusted_proxies: Vec<IpBlock>) {
        self.format = format;
        self.trusted_proxies = trusted_proxies;
    }

    /// Who sent `request` over a connection from `peer`, as the log names it.
    pub fn client(&self, peer: Option<SocketAddr>, request: Option<&Request<'_>>) -> Option<IpAddr> {
        let peer = peer?.ip();
        match request.and_then(|request| request.forwarded_for.as_deref()) {
            Some(forwarded) if !self.trusted_proxies.is_empty() => {
                Some(client_address(peer, Some(forwarded), &self.trusted_proxies))
            }
            _ => Some(peer),
        }
    }

    /// Whether records need their `server` (the site and port).
    pub fn names_the_server(&self) -> bool {
        self.writes_lines && self.format == LogFormat::VhostCombined
    }

    /// Whether anything reads the request details; when not, callers skip collecting them.
    pub fn is_enabled(&self) -> bool {
        self.writes_lines || log::log_enabled!(log::Level::Debug)
    }

    /// One line for a finished (or abandoned) response. At debug level the same facts also go
    /// to stderr with the connection's label, to match the other lines of that connection.
    pub fn record(&self, label: &dyn Display, access: &AccessRecord, sent: Sent) {
        debug!(
            "{label} done: {} with {} bytes sent for \"{}\"",
            access.status, sent.bytes, access.request_line
        );
        let mut sink = self.lock();
        let pending = match &mut *sink {
            Sink::Off => return,
            Sink::Stdout { pending } | Sink::File { pending, .. } => pending,
        };
        let mut line = String::with_capacity(160);
        log_line(&mut line, self.format, access, sent);
        pending.extend_from_slice(line.as_bytes());
        if !self.buffered || pending.len() >= FLUSH_AT_BYTES {
            write_pending(&mut sink);
        }
    }

    /// Writes the buffered lines. A failing write is reported on stderr, never allowed to stop
    /// serving; the lines are dropped rather than kept growing.
    pub fn flush(&self) {
        if !self.writes_lines {
            return;
        }
        let mut sink = self.lock();
        write_pending(&mut sink);
    }

    /// Reopens the file at its path (after logrotate moved the old one away).
    pub fn reopen(&self) -> io::Result<()> {
        let mut sink = self.lock();
        write_pending(&mut sink);
        if let Sink::File { path, file, .. } = &mut *sink {
            *file = open_append(path)?;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn write_pending(sink: &mut Sink) {
    let (result, pending, name) = match sink {
        Sink::Off => return,
        Sink::Stdout { pending } if pending.is_empty() => return,
        Sink::File { pending, .. } if pending.is_empty() => return,
        Sink::Stdout { pending } => {
            (write_lines(&mut io::stdout().lock(), pending), pending, "stdout".into())
        }
        Sink::File { path, file, pending } => {
            (write_lines(file, pending), pending, path.display().to_string())
        }
    };
    if let Err(error) = result {
        log::error!("access log {name}: {error}");
    }
    pending.clear();
}

/// Writes whole lines, at most `PIPE_BUF` bytes per `write`: a pipe or an `O_APPEND` file takes
/// such a write in one piece, so the lines of several workers never interleave.
fn write_lines(out: &mut impl Write, mut pending: &[u8]) -> io::Result<()> {
    const PIPE_BUF: usize = 4096;
    while !pending.is_empty() {
        let limit = pending.len().min(PIPE_BUF);
        let cut = match limit == pending.len() {
            true => limit,
            false => pending[..limit].iter().rposition(|&b| b == b'\n').map_or(limit, |newline| newline + 1),
        };
        out.write_all(&pending[..cut])?;
        pending = &pending[cut..];
    }
    Ok(())
}

fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The line for `access` in `format`: `vhost_combined` is `name:port ` and the Combined line.
fn log_line(line: &mut String, format: LogFormat, access: &AccessRecord, sent: Sent) {
    if let (LogFormat::VhostCombined, Some((name, port))) = (format, &access.server) {
        push_escaped(line, name.as_deref().unwrap_or("-"));
        let _ = write!(line, ":{port} ");
    }
    combined_log_line(line, access, sent);
}

/// `peer - user [22/Nov/2026:07:00:00 +0000] "GET / HTTP/1.1" 200 1234 "referer" "agent"`: the
/// user `-` unless authenticated, the body bytes actually sent, like nginx's `$remote_user`
/// and `$body_bytes_sent`.
fn combined_log_line(line: &mut String, access: &AccessRecord, sent: Sent) {
    match access.client {
        Some(client) => {
            let _ = write!(line, "{client}");
        }
        None => line.push('-'),
    }
    line.push_str(" - ");
    match &access.user {
        // Escaped like every client-chosen text, and its spaces too: the field is unquoted.
        Some(user) => {
            for (index, word) in user.split(' ').enumerate() {
                if index > 0 {
                    line.push_str("\\x20");
                }
                push_escaped(line, word);
            }
        }
        None => line.push('-'),
    }
    line.push_str(" [");
    push_log_time(line, access.received);
    line.push_str("] \"");
    push_escaped(line, &access.request_line);
    let _ = write!(line, "\" {} {} \"", access.status, sent.body_bytes());
    push_escaped(line, access.referer.as_deref().unwrap_or("-"));
    line.push_str("\" \"");
    push_escaped(line, access.user_agent.as_deref().unwrap_or("-"));
    line.push_str("\"\n");
}

/// `22/Nov/2026:07:00:00 +0000` (always UTC), rearranged from the IMF-fixdate
/// `Sun, 22 Nov 2026 07:00:00 GMT`.
fn push_log_time(line: &mut String, time: SystemTime) {
    let date = http_date(time);
    let _ = write!(line, "{}/{}/{}:{} +0000", date.day(), date.month(), date.year(), date.clock());
}

/// Client-chosen text, escaped the way nginx does: `"`, `\`, control bytes and non-ASCII as
/// `\xHH`, so no client can forge a line or a field.
fn push_escaped(line: &mut String, text: &str) {
    for byte in text.bytes() {
        match byte {
            b'"' | b'\\' | 0..0x20 | 0x7f.. => {
                let _ = write!(line, "\\x{byte:02X}");
            }
            _ => line.push(byte as char),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn record() -> AccessRecord {
        AccessRecord {
            server: None,
            user: None,
            client: Some("192.0.2.7".parse().unwrap()),
            request_line: "GET /a\"b HTTP/1.1".into(),
            referer: Some("http://x/\n".into()),
            user_agent: None,
            received: UNIX_EPOCH + Duration::from_secs(1_795_330_829),
            status: 200,
        }
    }

    #[test]
    fn writes_combined_log_format_with_hostile_text_escaped() {
        let mut line = String::new();
        combined_log_line(&mut line, &record(), Sent { head_bytes: 100, bytes: 1334 });
        assert_eq!(
            line,
            "192.0.2.7 - - [22/Nov/2026:07:00:29 +0000] \"GET /a\\x22b HTTP/1.1\" 200 1234 \"http://x/\\x0A\" \"-\"\n"
        );
    }

    #[test]
    fn vhost_combined_puts_the_site_and_port_first_and_combined_stays_as_it_was() {
        let mut access = record();
        access.server = Some((Some("example.org".to_owned()), 8443));
        let sent = Sent { head_bytes: 100, bytes: 1334 };
        let (mut combined, mut vhost) = (String::new(), String::new());
        log_line(&mut combined, LogFormat::Combined, &access, sent);
        log_line(&mut vhost, LogFormat::VhostCombined, &access, sent);
        let mut plain = String::new();
        combined_log_line(&mut plain, &access, sent);
        assert_eq!(combined, plain);
        assert_eq!(vhost, format!("example.org:8443 {plain}"));
        access.server = Some((None, 80));
        let mut unnamed = String::new();
        log_line(&mut unnamed, LogFormat::VhostCombined, &access, sent);
        assert!(unnamed.starts_with("-:80 192.0.2.7 - - ["), "{unnamed}");
    }

    #[test]
    fn lines_are_written_whole_in_pipe_sized_pieces() {
        struct Writes(Vec<Vec<u8>>);
        impl Write for Writes {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.0.push(buf.to_vec());
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let lines: Vec<u8> = (0..100).flat_map(|i| format!("{i:0>99}\n").into_bytes()).collect();
        let mut out = Writes(Vec::new());
        write_lines(&mut out, &lines).unwrap();
        assert_eq!(out.0.concat(), lines);
        assert!(out.0.len() == 3 && out.0.iter().all(|w| w.len() <= 4096 && w.ends_with(b"\n")));
    }

    #[test]
    fn an_unparseable_head_and_an_unsent_head_log_as_dash_and_zero() {
        let mut access = record();
        access.client = None;
        access.request_line = "-".into();
        let mut line = String::new();
        combined_log_line(&mut line, &access, Sent { head_bytes: 100, bytes: 40 }); // part of the head only
        assert!(line.starts_with("- - - ["), "{line}");
        assert!(line.contains("\"-\" 200 0 "), "{line}");
    }
}
