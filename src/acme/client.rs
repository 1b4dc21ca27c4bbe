//! HTTPS requests to the CA, blocking: they run in the ACME helper process, never in the loop.
//! One connection per request (`Connection: close`), rustls with ring, trusting the system's
//! roots or a given file; the response read to the end and parsed with httparse.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// Longest a request to the CA may take, connecting included.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest response taken (a certificate chain is a few kB).
const MAX_RESPONSE: usize = 1 << 20;
/// Debian's and most distributions' bundle of trusted roots.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A response from the CA.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }

    /// `Retry-After` in seconds (the delta form; a date is taken as a minute).
    pub fn retry_after(&self) -> Option<i64> {
        let value = self.header("retry-after")?.trim();
        Some(value.parse::<i64>().unwrap_or(60).max(0))
    }
}

/// Makes requests trusting `roots` (PEM, all the certificates in it).
pub struct Client {
    config: Arc<ClientConfig>,
}

impl Client {
    pub fn new(roots: &Path) -> Result<Client, String> {
        let mut store = RootCertStore::empty();
        let certificates = CertificateDer::pem_file_iter(roots)
            .map_err(|error| format!("{}: {error}", roots.display()))?
            .filter_map(Result::ok);
        let (added, _) = store.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(format!("{}: no certificate to trust", roots.display()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Client { config: Arc::new(config) })
    }

    /// `method` `url` with `body` (as `application/jose+json` when there is one).
    pub fn request(&self, method: &str, url: &str, body: Option<&str>) -> Result<Response, String> {
        let error = |what: &dyn std::fmt::Display| format!("{method} {url}: {what}");
        let (host, port, path) = split_url(url).ok_or_else(|| error(&"not an https:// URL"))?;
        let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .map_err(|e| error(&e))?
            .next()
            .ok_or_else(|| error(&"no address"))?;
        let tcp = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| error(&e))?;
        tcp.set_read_timeout(Some(TIMEOUT))
            .and_then(|()| tcp.set_write_timeout(Some(TIMEOUT)))
            .map_err(|e| error(&e))?;
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|e| error(&e))?;
        let session = ClientConnection::new(Arc::clone(&self.config), name).map_err(|e| error(&e))?;
        let mut stream = StreamOwned::new(session, tcp);
        // The port too when it is not 443: a CA builds its URLs from the Host it was asked for.
        let authority = if port == 443 { host.to_owned() } else { format!("{host}:{port}") };
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: onepoll/{} acme\r\nAccept: */*\r\nConnection: close\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if let Some(body) = body {
            head.push_str(&format!(
                "Content-Type: application/jose+json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(|e| error(&e))?;
        if let Some(body) = body {
            stream.write_all(body.as_bytes()).map_err(|e| error(&e))?;
        }
        stream.flush().map_err(|e| error(&e))?;
        let mut received = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => break,
                Ok(read) => received.extend_from_slice(&chunk[..read]),
                // A server that closes without close_notify: what came is all there is.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(error(&e)),
            }
            if received.len() > MAX_RESPONSE {
                return Err(error(&"response too large"));
            }
        }
        parse_response(&received, method == "HEAD").map_err(|e| error(&e))
    }
}

/// `https://host[:port]/path` as its parts.
fn split_url(url: &str) -> Option<(&str, u16, &str)> {
    let rest = url.strip_prefix("https://")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |at| (&rest[..at], &rest[at..]));
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, 443),
    };
    (!host.is_empty()).then_some((host, port, path))
}

/// A whole HTTP/1.1 response, its body by Content-Length, chunked, or to the end.
fn parse_response(bytes: &[u8], head_only: bool) -> Result<Response, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut parsed = httparse::Response::new(&mut headers);
    let head_len = match parsed.parse(bytes).map_err(|error| format!("bad response: {error}"))? {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Err("the response ended in its head".into()),
    };
    let status = parsed.code.unwrap_or(0);
    let headers: Vec<(String, String)> = (parsed.headers.iter())
        .map(|header| (header.name.to_ascii_lowercase(), String::from_utf8_lossy(header.value).into_owned()))
        .collect();
    let rest = &bytes[head_len..];
    let header = |name: &str| headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let body = if head_only {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|coding| coding.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)?
    } else if let Some(len) = header("content-length").and_then(|len| len.trim().parse::<usize>().ok()) {
        rest.get(..len).ok_or("the response ended in its body")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn dechunk(mut input: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end =
            input.windows(2).position(|pair| pair == b"\r\n").ok_or("a chunk without its size line")?;
        let size_text = std::str::from_utf8(&input[..line_end]).map_err(|_| "a bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        input = &input[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(input.get(..size).ok_or("the response ended in a chunk")?);
        input = input.get(size + 2..).ok_or("the response ended in a chunk")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_port_and_path() {
        assert_eq!(split_url("https://127.0.0.1:14000/dir"), Some(("127.0.0.1", 14000, "/dir")));
        assert_eq!(
            split_url("https://acme-v02.api.letsencrypt.org/directory"),
            Some(("acme-v02.api.letsencrypt.org", 443, "/directory"))
        );
        assert_eq!(split_url("https://[::1]:8443/a?b"), Some(("[::1]", 8443, "/a?b")));
        assert_eq!(split_url("https://ca.test"), Some(("ca.test", 443, "/")));
        assert_eq!(split_url("http://ca.test/"), None);
    }

    #[test]
    fn responses_by_length_chunked_and_to_the_end() {
        let sized =
            parse_response(b"HTTP/1.1 201 Created\r\nLocation: /o/1\r\nContent-Length: 2\r\n\r\n{}", false)
                .unwrap();
        assert_eq!(
            (sized.status, sized.header("location"), &sized.body[..]),
            (201, Some("/o/1"), &b"{}"[..])
        );
        let chunked = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(chunked.body, b"abcde");
        let to_end = parse_response(b"HTTP/1.1 200 OK\r\n\r\nall of it", false).unwrap();
        assert_eq!(to_end.body, b"all of it");
        let nonce =
            parse_response(b"HTTP/1.1 200 OK\r\nReplay-Nonce: abc\r\nRetry-After: 30\r\n\r\n", true).unwrap();
        assert_eq!((nonce.header("replay-nonce"), nonce.retry_after()), (Some("abc"), Some(30)));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", false).is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false).is_err()
        );
        assert!(parse_response(b"HTTP/1.1 200", false).is_err());
    }
}
