//! What the server reports about itself on `--status-listen`: `/status` in nginx's stub_status
//! text (which existing exporters and monitoring plugins parse as is) and `/metrics` in
//! Prometheus' text format.
//!
//! Counting costs a few additions per request and nothing else: plain integers on the loop's
//! thread, no clock read, no lock. The engine counts connections ([`Census`]: accepts, and how
//! many are in each [`Phase`] now); the connections count requests and bytes ([`Counters`],
//! in `Cell`s, because a [`Context`] lends the service's parts shared); the file cache counts
//! its hits; the TLS layer its handshakes.

use std::cell::Cell;
use std::fmt::Write as _;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::drive::{Context, Phase};
use crate::http::{HttpError, Method, Request, Resource, TextFormat};
use crate::site::Sites;

/// The engine's count of its connections.
#[derive(Debug, Default, Clone)]
pub struct Census {
    /// Connections `accept` returned.
    pub accepted: u64,
    /// Of those, the ones a client was made for (a TLS session refused is not handled).
    pub handled: u64,
    /// Open connections by phase, indexed by `Phase as usize`.
    pub open: [u64; Phase::COUNT],
    /// Times accepting paused at `--max-conns`, and for want of descriptors (EMFILE).
    pub paused_at_limit: u64,
    pub paused_out_of_descriptors: u64,
}

impl Census {
    /// A client was made, in `phase`.
    pub fn opened(&mut self, phase: Phase) {
        self.handled += 1;
        self.open[phase as usize] += 1;
    }

    pub fn moved(&mut self, from: Phase, to: Phase) {
        self.open[from as usize] -= 1;
        self.open[to as usize] += 1;
    }

    pub fn closed(&mut self, phase: Phase) {
        self.open[phase as usize] -= 1;
    }

    fn active(&self) -> u64 {
        self.open.iter().sum()
    }
}

/// The service's counts: requests by status class and by site, bytes sent, 503s for want of
/// password-checking time.
#[derive(Debug)]
pub struct Counters {
    started: Instant,
    /// Responses by status class, 1xx to 5xx.
    by_class: [Cell<u64>; 5],
    /// Each configured site's requests, by its id; a request no site took is not among them.
    by_site: Vec<(String, Cell<u64>)>,
    sent_bytes: Cell<u64>,
    auth_busy: Cell<u64>,
    /// Each certificate file served with and its `notAfter` (Unix seconds).
    certificates: Vec<(String, i64)>,
}

impl Counters {
    pub fn new(sites: &Sites) -> Counters {
        Counters {
            started: Instant::now(),
            by_class: Default::default(),
            by_site: sites.iter().map(|site| (site.id.clone(), Cell::new(0))).collect(),
            sent_bytes: Cell::new(0),
            auth_busy: Cell::new(0),
            certificates: Vec::new(),
        }
    }

    /// The certificates served with now (at start and after each SIGHUP).
    pub fn set_certificates(&mut self, certificates: &[(String, i64)]) {
        self.certificates = certificates.to_vec();
    }

    /// SIGHUP changed the sites: the ones that stay (by id) keep their counts.
    pub fn resite(&mut self, sites: &Sites) {
        let old = std::mem::take(&mut self.by_site);
        self.by_site = sites
            .iter()
            .map(|site| {
                let kept = old.iter().find(|(id, _)| *id == site.id).map_or(0, |(_, count)| count.get());
                (site.id.clone(), Cell::new(kept))
            })
            .collect();
    }

    /// One response decided: its status, the site (by slot) that answered, if one did, and
    /// whether it was a 503 for want of password-checking time.
    pub fn count(&self, status: u16, site: Option<usize>, auth_busy: bool) {
        if let Some(class) = self.by_class.get(usize::from(status / 100).wrapping_sub(1)) {
            bump(class, 1);
        }
        if let Some((_, count)) = site.and_then(|slot| self.by_site.get(slot)) {
            bump(count, 1);
        }
        if auth_busy {
            bump(&self.auth_busy, 1);
        }
    }

    /// Every response counted (each has a class: one addition fewer per request than a total
    /// of its own).
    fn requests(&self) -> u64 {
        self.by_class.iter().map(Cell::get).sum()
    }

    /// Bytes that reached the socket for one response (head and body).
    pub fn sent(&self, bytes: u64) {
        bump(&self.sent_bytes, bytes);
    }
}

fn bump(cell: &Cell<u64>, by: u64) {
    cell.set(cell.get().wrapping_add(by));
}

/// What the reports are made from, beyond the census and the counters.
#[derive(Debug, Default, Clone, Copy)]
pub struct Extras {
    pub cache: CacheStats,
    /// Compressions queued and not yet made.
    pub compressions_queued: u64,
    pub tls_full_handshakes: u64,
    pub tls_resumptions: u64,
}

/// The file cache's hits: from memory as they are, and compressed forms among them.
#[derive(Debug, Default, Clone, Copy)]
pub struct CacheStats {
    pub hits: u64,
    pub hit_bytes: u64,
    pub compressed_hits: u64,
    pub compressed_hit_bytes: u64,
}

/// nginx's stub_status, byte for byte in layout (its trailing spaces included). A TLS
/// handshake counts as reading: the server is reading the client's hello.
pub fn stub_status(census: &Census, counters: &Counters) -> String {
    let open = |phase: Phase| census.open[phase as usize];
    format!(
        "Active connections: {} \nserver accepts handled requests\n {} {} {} \nReading: {} Writing: {} Waiting: {} \n",
        census.active(),
        census.accepted,
        census.handled,
        counters.requests(),
        open(Phase::Reading) + open(Phase::Handshaking),
        open(Phase::Writing),
        open(Phase::Waiting),
    )
}

/// The Prometheus text exposition format (version 0.0.4): each family's HELP and TYPE, then
/// its samples.
pub fn prometheus(census: &Census, counters: &Counters, extras: &Extras) -> String {
    let mut text = String::with_capacity(2048);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
        let _ = writeln!(text, "# HELP onepoll_{name} {help}\n# TYPE onepoll_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(text, "onepoll_{name}{labels} {value}");
        }
    };
    let open = |phase: Phase| census.open[phase as usize];
    family(
        "connections",
        "gauge",
        "Open client connections by state.",
        &[
            ("{state=\"handshaking\"}", open(Phase::Handshaking)),
            ("{state=\"reading\"}", open(Phase::Reading)),
            ("{state=\"writing\"}", open(Phase::Writing)),
            ("{state=\"waiting\"}", open(Phase::Waiting)),
        ],
    );
    family("connections_accepted_total", "counter", "Connections accepted.", &[("", census.accepted)]);
    family("connections_handled_total", "counter", "Connections served.", &[("", census.handled)]);
    family(
        "accept_pauses_total",
        "counter",
        "Times accepting paused, by why.",
        &[
            ("{reason=\"max_conns\"}", census.paused_at_limit),
            ("{reason=\"descriptors\"}", census.paused_out_of_descriptors),
        ],
    );
    let classes: Vec<(String, u64)> = (counters.by_class.iter().enumerate())
        .map(|(index, count)| (format!("{{class=\"{}xx\"}}", index + 1), count.get()))
        .collect();
    let classes: Vec<(&str, u64)> = classes.iter().map(|(labels, count)| (labels.as_str(), *count)).collect();
    family("requests_total", "counter", "Responses by status class.", &classes);
    let sites: Vec<(String, u64)> = (counters.by_site.iter())
        .map(|(id, count)| (format!("{{site=\"{}\"}}", label_value(id)), count.get()))
        .collect();
    let sites: Vec<(&str, u64)> = sites.iter().map(|(labels, count)| (labels.as_str(), *count)).collect();
    family("site_requests_total", "counter", "Responses by the configured site that gave them.", &sites);
    family(
        "sent_bytes_total",
        "counter",
        "Response bytes sent, heads included.",
        &[("", counters.sent_bytes.get())],
    );
    family(
        "auth_busy_total",
        "counter",
        "503 responses for want of password-checking time (the bcrypt budget).",
        &[("", counters.auth_busy.get())],
    );
    let cache = extras.cache;
    family("cache_hits_total", "counter", "Responses served from the file cache.", &[("", cache.hits)]);
    family("cache_hit_bytes_total", "counter", "Body bytes of cache hits.", &[("", cache.hit_bytes)]);
    family(
        "cache_compressed_hits_total",
        "counter",
        "Cache hits on a compressed form.",
        &[("", cache.compressed_hits)],
    );
    family(
        "cache_compressed_hit_bytes_total",
        "counter",
        "Body bytes of cache hits on a compressed form.",
        &[("", cache.compressed_hit_bytes)],
    );
    family(
        "compressions_queued",
        "gauge",
        "Compressed forms waiting for the compressor.",
        &[("", extras.compressions_queued)],
    );
    family(
        "tls_handshakes_total",
        "counter",
        "TLS handshakes completed, by kind.",
        &[("{kind=\"full\"}", extras.tls_full_handshakes), ("{kind=\"resumed\"}", extras.tls_resumptions)],
    );
    family(
        "uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        &[("", counters.started.elapsed().as_secs())],
    );
    if !counters.certificates.is_empty() {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs() as i64);
        text.push_str(
            "# HELP onepoll_certificate_expiry_seconds Seconds until a certificate's notAfter (negative: expired).\n\
             # TYPE onepoll_certificate_expiry_seconds gauge\n",
        );
        for (file, not_after) in &counters.certificates {
            let file = label_value(file);
            let _ = writeln!(
                text,
                "onepoll_certificate_expiry_seconds{{certificate=\"{file}\"}} {}",
                not_after - now
            );
        }
    }
    text
}

/// The workers' `/metrics` texts as one: each sample summed over the workers, but uptime (the
/// longest) and certificate expiry (the soonest). The first text gives the families and their
/// order; the workers share one configuration, so they have the same series.
pub fn sum_metrics(texts: &[String]) -> String {
    let Some(first) = texts.first() else { return String::new() };
    let mut combined: Vec<(&str, i64)> = Vec::new();
    for text in texts {
        for (series, value) in samples(text) {
            match combined.iter_mut().find(|(known, _)| *known == series) {
                Some((_, total)) if series.starts_with("onepoll_uptime_seconds") => {
                    *total = (*total).max(value)
                }
                Some((_, total)) if series.starts_with("onepoll_certificate_expiry_seconds") => {
                    *total = (*total).min(value)
                }
                Some((_, total)) => *total += value,
                None => combined.push((series, value)),
            }
        }
    }
    let mut text = String::with_capacity(first.len());
    for line in first.lines() {
        match line.rsplit_once(' ').filter(|_| !line.starts_with('#')) {
            Some((series, _)) => {
                let total =
                    combined.iter().find(|(known, _)| *known == series).map_or(0, |(_, total)| *total);
                let _ = writeln!(text, "{series} {total}");
            }
            None => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

/// nginx's stub_status from a `/metrics` text (the workers' sum).
pub fn stub_status_from_metrics(text: &str) -> String {
    let all = samples(text);
    let sum = |prefix: &str| -> i64 {
        all.iter().filter(|(series, _)| series.starts_with(prefix)).map(|(_, value)| value).sum()
    };
    let state = |name: &str| sum(&format!("onepoll_connections{{state=\"{name}\"}}"));
    let (handshaking, reading, writing, waiting) =
        (state("handshaking"), state("reading"), state("writing"), state("waiting"));
    format!(
        "Active connections: {} \nserver accepts handled requests\n {} {} {} \nReading: {} Writing: {} Waiting: {} \n",
        handshaking + reading + writing + waiting,
        sum("onepoll_connections_accepted_total"),
        sum("onepoll_connections_handled_total"),
        sum("onepoll_requests_total{"),
        reading + handshaking,
        writing,
        waiting,
    )
}

/// Every `series value` line of a metrics text.
fn samples(text: &str) -> Vec<(&str, i64)> {
    (text.lines())
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            line.rsplit_once(' ').and_then(|(series, value)| Some((series, value.parse().ok()?)))
        })
        .collect()
}

/// A label value in the exposition format: `\`, `"` and newlines escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The status listener's answer to `request`: `/status` or `/metrics` (any query), GET or
/// HEAD; anything else is a 404 or a 405.
pub fn answer<B>(request: &Request<'_>, cx: &Context<'_>) -> Result<Resource<B>, HttpError> {
    let path = request.target.raw.split('?').next().unwrap_or_default();
    let (Some(census), Some(counters)) = (cx.census, cx.counters) else { return Err(HttpError::NotFound) };
    let report = match path {
        "/status" => Resource::Report { body: stub_status(census, counters), format: TextFormat::Plain },
        "/metrics" => {
            let extras = Extras {
                cache: cx.cache.as_ref().map(|cache| cache.stats()).unwrap_or_default(),
                compressions_queued: cx.cache.as_ref().map_or(0, |cache| cache.compressions_queued() as u64),
                tls_full_handshakes: crate::tls::handshakes().0,
                tls_resumptions: crate::tls::handshakes().1,
            };
            let body = prometheus(census, counters, &extras);
            Resource::Report { body, format: TextFormat::Prometheus }
        }
        _ => return Err(HttpError::NotFound),
    };
    match request.method {
        Method::Get | Method::Head => Ok(report),
        _ => Err(HttpError::MethodNotAllowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted() -> (Census, Counters) {
        let mut census = Census { accepted: 7, ..Census::default() };
        census.opened(Phase::Handshaking);
        census.opened(Phase::Reading);
        census.moved(Phase::Reading, Phase::Waiting);
        census.opened(Phase::Writing);
        let dir = tempfile::tempdir().unwrap();
        let root = crate::files::Root::new(dir.path()).unwrap();
        let site = crate::site::Site {
            id: String::new(),
            root,
            headers: Vec::new(),
            path_headers: Vec::new(),
            https_redirect: None,
            auth: None,
        };
        let counters = Counters::new(&Sites::one(site));
        counters.count(200, Some(0), false);
        counters.count(404, None, false);
        counters.count(503, Some(0), true);
        counters.sent(1234);
        (census, counters)
    }

    /// The layout nginx's stub_status has, which exporters parse line by line.
    #[test]
    fn stub_status_is_laid_out_as_nginx_lays_it_out() {
        let (census, counters) = counted();
        assert_eq!(
            stub_status(&census, &counters),
            "Active connections: 3 \nserver accepts handled requests\n 7 3 3 \nReading: 1 Writing: 1 Waiting: 1 \n"
        );
    }

    #[test]
    fn metrics_have_help_type_and_the_counts() {
        let (census, counters) = counted();
        let text = prometheus(&census, &counters, &Extras { tls_resumptions: 4, ..Extras::default() });
        for line in [
            "# TYPE onepoll_connections gauge",
            "onepoll_connections{state=\"handshaking\"} 1",
            "onepoll_requests_total{class=\"2xx\"} 1",
            "onepoll_requests_total{class=\"4xx\"} 1",
            "onepoll_requests_total{class=\"5xx\"} 1",
            "onepoll_site_requests_total{site=\"#1\"} 2",
            "onepoll_sent_bytes_total 1234",
            "onepoll_auth_busy_total 1",
            "onepoll_tls_handshakes_total{kind=\"resumed\"} 4",
        ] {
            assert!(text.lines().any(|got| got == line), "{line} missing from\n{text}");
        }
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    /// Two workers' reports as one: counts and gauges summed, uptime the longest, expiry the
    /// soonest; stub_status made from the sum agrees with the workers' own.
    #[test]
    fn workers_reports_sum_into_one() {
        let (census, counters) = counted();
        let one = prometheus(&census, &counters, &Extras::default());
        let two = one.replace("onepoll_uptime_seconds 0", "onepoll_uptime_seconds 9")
            + "onepoll_certificate_expiry_seconds{certificate=\"a.pem\"} 5\n";
        let one = one + "onepoll_certificate_expiry_seconds{certificate=\"a.pem\"} 7\n";
        let sum = sum_metrics(&[one.clone(), two]);
        for line in [
            "onepoll_requests_total{class=\"2xx\"} 2",
            "onepoll_connections{state=\"waiting\"} 2",
            "onepoll_sent_bytes_total 2468",
            "onepoll_uptime_seconds 9",
            "onepoll_certificate_expiry_seconds{certificate=\"a.pem\"} 5",
            "# TYPE onepoll_connections gauge",
        ] {
            assert!(sum.lines().any(|got| got == line), "{line} missing from\n{sum}");
        }
        assert_eq!(stub_status_from_metrics(&one), stub_status(&census, &counters));
        assert!(stub_status_from_metrics(&sum).starts_with("Active connections: 6 \n"));
    }
}
