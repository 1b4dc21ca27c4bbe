//! What the service answers one request with, whichever protocol carried it: the site the
//! request goes to, what it finds there (or the error, redirect, health check or report that
//! answers instead), the response with the site's headers, its count on the status listener
//! and its access-log record. HTTP/1.1 ([`crate::connection`]) frames the result as a head
//! and body on its socket; HTTP/2 ([`crate::connection_h2`]) as a stream's frames.

use std::net::SocketAddr;
use std::time::SystemTime;

use crate::access_log::AccessRecord;
use crate::auth::Auth;
use crate::drive::Context;
use crate::files::{FileBody, Found};
use crate::http::host::{normalise_host, request_authority};
use crate::http::{HttpError, Request, Resource, Response, https_location, respond};
use crate::site::{Site, SiteChoice};
use crate::status;
use crate::transport::Transport;

/// What a response carries for its access line: nothing at all while no log is on, so a
/// response costs no record to build, move and drop; boxed, so it moves as one pointer.
pub type Logged = Option<Box<AccessRecord>>;

/// A parsed request being answered: where it went, whether its connection may carry another
/// (HTTP/1.1 framing), and who `--auth-file` found it came from.
pub struct Exchange<'r, 'h> {
    pub request: &'r Request<'h>,
    /// The site it went to (none: its host names no site, or it is the health check).
    pub site: Option<&'r Site>,
    pub keep_alive: bool,
    /// It gets an access line (the health check does not: monitors would drown the log).
    pub logged: bool,
    pub user: Option<String>,
}

/// Looks up what `request` asks for where `choice` sends it, on a connection over
/// `transport`; `refused` is an error its framing already earned (an HTTP/1.1 body we will
/// not read), which answers instead.
pub fn look_up<'r, 'h>(
    request: &'r Request<'h>,
    choice: SiteChoice<'r>,
    refused: Option<HttpError>,
    transport: &impl Transport,
    keep_alive: bool,
    cx: &mut Context<'_>,
) -> (Exchange<'r, 'h>, Result<Found, HttpError>) {
    let mut user = None;
    let (site, misdirected) = match choice {
        SiteChoice::Site(site) if !transport.certificate_covers(&site.id) => (None, true),
        SiteChoice::Site(site) => (Some(site), false),
        _ => (None, false),
    };
    // `--https-redirect`: where a plain-HTTP request is sent instead, if anywhere.
    let on_https = match site.and_then(|site| site.https_redirect) {
        Some(port) if !transport.is_encrypted() => https_location(request, port),
        _ => None,
    };
    let plain_answer = refused.is_none() && !transport.is_plain_http_on_tls_port();
    let challenge = plain_answer.then(|| cx.sites.acme_challenge(request)).flatten();
    let found = match challenge {
        Some(found) => Ok(found),
        None => match (refused, site, on_https) {
            (Some(error), ..) => Err(error),
            _ if transport.is_plain_http_on_tls_port() => Err(HttpError::PlainHttpOnHttpsPort),
            (None, None, _) => match choice {
                SiteChoice::Health => Ok(Resource::health()),
                SiteChoice::Report => status::answer(request, cx),
                _ if misdirected => Err(HttpError::Misdirected),
                _ => Err(HttpError::NotFound),
            },
            (None, Some(_), Some(location)) => Ok(Resource::OnHttps { location }),
            (None, Some(site), None) => {
                let authorized = |()| site.auth.as_ref().map_or(Ok(None), |auth| authorize(auth, request));
                request.check_method().and_then(authorized).and_then(|authorized| {
                    user = authorized;
                    site.root.find_target(
                        &request.target,
                        request.fields.accept_encoding.as_deref(),
                        cx.cache.as_deref_mut(),
                    )
                })
            }
        },
    };
    // Monitors' requests (health checks, reports) are neither logged nor counted.
    let logged = !matches!(choice, SiteChoice::Health | SiteChoice::Report);
    (Exchange { request, site, keep_alive, user, logged }, found)
}

/// The response to `exchange` (`None`: a request too broken to parse) given what was
/// `found`, with its site's headers, counted, and its access record if the log is on.
/// `local_port` is asked only when the log names the server.
pub fn respond_to(
    exchange: Option<&Exchange<'_, '_>>,
    found: Result<Found, HttpError>,
    cx: &Context<'_>,
    now: SystemTime,
    peer: Option<SocketAddr>,
    local_port: &mut dyn FnMut() -> u16,
) -> (Response<FileBody>, Logged) {
    let request = exchange.map(|exchange| exchange.request);
    // A head too broken to name a site gets the default site's fields; a request whose
    // host names none gets no site's.
    let site = match exchange {
        Some(exchange) => exchange.site,
        None => Some(cx.sites.default()),
    };
    let logged = exchange.is_none_or(|exchange| exchange.logged);
    let counters = cx.counters.filter(|_| logged);
    let auth_busy = counters.is_some() && matches!(found, Err(HttpError::AuthenticationBusy));
    let mut response = respond(request, found, now);
    if let Some(counters) = counters {
        counters.count(response.status.code(), site.map(|site| site.root.slot()), auth_busy);
    }
    if let Some(site) = site {
        response.add_headers(&site.headers);
        if !site.path_headers.is_empty()
            && let Some(path) = request.and_then(|request| request.servable_path().ok())
        {
            response.add_path_headers(&site.path_headers, &path.decoded());
        }
    }
    let server =
        (logged && cx.access_log.names_the_server()).then(|| (server_name(site, request), local_port()));
    let record = (logged && cx.access_log.is_enabled()).then(|| {
        let request_line = match request {
            Some(r) => format!("{} {} {}", r.method.as_str(), r.target.raw, r.version.as_str()),
            None => "-".to_owned(),
        };
        let text = |field: Option<&[u8]>| field.map(|bytes| String::from_utf8_lossy(bytes).into_owned());
        let status = response.status.code();
        Box::new(AccessRecord {
            server,
            client: cx.access_log.client(peer, request),
            request_line,
            referer: text(request.and_then(|request| request.referer)),
            user_agent: text(request.and_then(|request| request.user_agent)),
            user: exchange.and_then(|exchange| exchange.user.clone()),
            received: now,
            status,
        })
    });
    (response, record)
}

/// The access log's `vhost_combined` name for a request: its site's, else the host it named.
fn server_name(site: Option<&Site>, request: Option<&Request<'_>>) -> Option<String> {
    site.and_then(Site::server_name).map(str::to_owned).or_else(|| {
        let host = request.and_then(request_authority).and_then(normalise_host);
        host.map(|host| host.as_str().to_owned())
    })
}

/// `--auth-file`: lets the request through (with its user, when its path is guarded), or the
/// 401 or 503 that answers it instead, before any file is looked at. A target that names no
/// path passes here and is refused by the lookup.
fn authorize(auth: &Auth, request: &Request<'_>) -> Result<Option<String>, HttpError> {
    let path = || request.servable_path().ok().map(|path| path.decoded());
    auth.check(path, request.authorization.as_ref().map(|credentials| credentials.0.as_ref()))
}
