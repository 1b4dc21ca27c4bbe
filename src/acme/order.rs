//! One conversation with a CA (RFC 8555 §7): its directory, a nonce, the account, an order
//! for some names, a challenge per name answered through the loop, the CSR, the chain. Every
//! call blocks; the ACME helper process is the only caller.

use std::thread::sleep;
use std::time::Duration;

use log::{debug, info};
use serde_json::{Value, json};

use super::client::{Client, Response};
use super::jws::{AccountKey, Signer, b64};
use super::renewal::{Window, parse_window};

/// The challenge a site is validated by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// RFC 8737: a handshake on port 443.
    TlsAlpn01,
    /// RFC 8555 §8.3: a request to port 80.
    Http01,
}

impl ChallengeKind {
    pub fn name(self) -> &'static str {
        match self {
            ChallengeKind::TlsAlpn01 => "tls-alpn-01",
            ChallengeKind::Http01 => "http-01",
        }
    }
}

/// Where the loop finds what answers a challenge: the helper puts it there before it tells
/// the CA to validate, and takes it away after.
pub trait Publish {
    /// HTTP-01: `key_authorization` served at `/.well-known/acme-challenge/<token>`.
    fn http01(&self, token: &str, key_authorization: &str) -> std::result::Result<(), String>;
    /// TLS-ALPN-01: the certificate (and key) presented to validations for `name`.
    fn tls_alpn01(&self, name: &str, cert_pem: &str, key_pem: &str) -> std::result::Result<(), String>;
    /// Takes away what answered the challenge of `name` (its `token`).
    fn withdraw(&self, name: &str, token: &str);
}

/// What went wrong, and how long the CA asked us to wait before trying again.
#[derive(Debug)]
pub struct AcmeError {
    pub message: String,
    pub retry_after: Option<i64>,
}

impl std::fmt::Display for AcmeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for AcmeError {
    fn from(message: String) -> AcmeError {
        AcmeError { message, retry_after: None }
    }
}

type Result<T> = std::result::Result<T, AcmeError>;

/// How often a `badNonce` is retried with the fresh nonce it came with (RFC 8555 §6.5).
const NONCE_RETRIES: usize = 5;
/// Polls of an authorisation or order before giving up, and the wait between them when the CA
/// gives no `Retry-After`.
const POLLS: usize = 60;
const POLL_WAIT: Duration = Duration::from_secs(1);

/// A CA, as one account sees it.
pub struct Ca {
    client: Client,
    directory: Value,
    key: AccountKey,
    nonce: Option<String>,
    /// The account's URL, once `account` has run.
    kid: Option<String>,
}

/// External account binding (RFC 8555 §7.3.4): a key ID and MAC key the CA gave out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    pub hmac_key: String,
}

/// A certificate just issued.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Ca {
    /// Reads the directory at `url`.
    pub fn connect(client: Client, url: &str, key: AccountKey) -> Result<Ca> {
        let response = client.request("GET", url, None)?;
        let directory = json_of(&response, "the directory")?;
        if directory.get("newOrder").is_none() {
            return Err(format!("{url} is not an ACME directory").into());
        }
        Ok(Ca { client, directory, key, nonce: None, kid: None })
    }

    fn url(&self, name: &str) -> Result<String> {
        (self.directory.get(name).and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| format!("the directory has no {name}").into())
    }

    /// Whether the CA offers renewal information (RFC 9773).
    pub fn has_renewal_info(&self) -> bool {
        self.directory.get("renewalInfo").is_some()
    }

    /// A signed POST (POST-as-GET for no `payload`), its nonce kept from the last response;
    /// a `badNonce` is tried again with the new one.
    fn post(&mut self, url: &str, payload: Option<&Value>) -> Result<Response> {
        for _ in 0..NONCE_RETRIES {
            let nonce = match self.nonce.take() {
                Some(nonce) => nonce,
                None => self.fresh_nonce()?,
            };
            let signer = match &self.kid {
                Some(kid) => Signer::Kid(kid),
                None => Signer::Jwk,
            };
            let body = self.key.sign(url, &nonce, &signer, payload)?;
            let response = self.client.request("POST", url, Some(&body))?;
            self.nonce = response.header("replay-nonce").map(str::to_owned);
            if response.status < 400 {
                return Ok(response);
            }
            let problem = serde_json::from_slice::<Value>(&response.body).unwrap_or(Value::Null);
            let kind = problem.get("type").and_then(Value::as_str).unwrap_or_default();
            if kind == "urn:ietf:params:acme:error:badNonce" {
                debug!("acme: badNonce from {url}, trying again with the new nonce");
                continue;
            }
            let detail = problem.get("detail").and_then(Value::as_str).unwrap_or_default();
            return Err(AcmeError {
                message: format!("{url}: {} {kind} {detail}", response.status),
                retry_after: response.retry_after(),
            });
        }
        Err(format!("{url}: badNonce {NONCE_RETRIES} times in a row").into())
    }

    fn fresh_nonce(&self) -> Result<String> {
        let url = self.url("newNonce")?;
        let response = self.client.request("HEAD", &url, None)?;
        (response.header("replay-nonce").map(str::to_owned))
            .ok_or_else(|| format!("{url}: no Replay-Nonce").into())
    }

    /// Finds or creates the account of this key (`newAccount` returns the existing one for a
    /// known key), agreeing to the CA's terms.
    pub fn account(&mut self, email: Option<&str>, eab: Option<&Eab>) -> Result<()> {
        let url = self.url("newAccount")?;
        let mut payload = json!({ "termsOfServiceAgreed": true });
        if let Some(email) = email {
            payload["contact"] = json!([format!("mailto:{email}")]);
        }
        if let Some(eab) = eab {
            payload["externalAccountBinding"] = self.key.external_binding(&url, &eab.kid, &eab.hmac_key)?;
        }
        let response = self.post(&url, Some(&payload))?;
        let kid = response.header("location").ok_or_else(|| format!("{url}: no account URL (Location)"))?;
        debug!("acme: account {kid} ({})", response.status);
        self.kid = Some(kid.to_owned());
        Ok(())
    }

    /// The CA's renewal window for the certificate `der`, and when to ask again.
    pub fn renewal_window(&mut self, der: &[u8]) -> Option<(Window, Option<i64>)> {
        let base = self.url("renewalInfo").ok()?;
        let id = super::renewal::cert_id(der)?;
        let response =
            self.client.request("GET", &format!("{}/{id}", base.trim_end_matches('/')), None).ok()?;
        let body = serde_json::from_slice::<Value>(&response.body).ok()?;
        Some((parse_window(&body)?, response.retry_after()))
    }

    /// Orders a certificate for `names`, answers each authorisation's `kind` challenge through
    /// `publish`, and returns the chain with its new key. `replaces`: the ARI ID of the
    /// certificate this one renews.
    pub fn obtain(
        &mut self,
        names: &[String],
        kind: ChallengeKind,
        publish: &dyn Publish,
        replaces: Option<String>,
    ) -> Result<Issued> {
        let url = self.url("newOrder")?;
        let identifiers: Vec<Value> =
            names.iter().map(|name| json!({ "type": "dns", "value": name })).collect();
        let mut payload = json!({ "identifiers": identifiers });
        let plain = payload.clone();
        if let Some(replaces) = replaces.filter(|_| self.has_renewal_info()) {
            payload["replaces"] = json!(replaces);
        }
        // A CA may refuse `replaces` (a certificate from another account or CA, or one
        // replaced already): the renewal then goes on as a new order.
        let response = match self.post(&url, Some(&payload)) {
            Err(error) if payload != plain => {
                debug!("acme: newOrder with replaces refused ({error}); ordering without it");
                self.post(&url, Some(&plain))?
            }
            response => response?,
        };
        let order_url = response.header("location").ok_or_else(|| format!("{url}: no order URL"))?.to_owned();
        let order = json_of(&response, "the order")?;
        for authorization in order["authorizations"].as_array().into_iter().flatten() {
            let authorization =
                authorization.as_str().ok_or_else(|| format!("{order_url}: a bad authorization"))?;
            self.authorize(authorization, kind, publish)?;
        }
        let order = self.poll(&order_url, &["ready", "valid"], "the order")?;
        let finalize =
            order["finalize"].as_str().ok_or_else(|| format!("{order_url}: no finalize URL"))?.to_owned();
        let key = rcgen::KeyPair::generate().map_err(|error| format!("a certificate key: {error}"))?;
        let csr = (rcgen::CertificateParams::new(names.to_vec())
            .and_then(|params| params.serialize_request(&key)))
        .map_err(|error| format!("the CSR: {error}"))?;
        if order["status"] != "valid" {
            self.post(&finalize, Some(&json!({ "csr": b64(csr.der()) })))?;
        }
        let order = self.poll(&order_url, &["valid"], "the order")?;
        let certificate =
            order["certificate"].as_str().ok_or_else(|| format!("{order_url}: no certificate URL"))?;
        let response = self.post(certificate, None)?;
        let chain_pem = String::from_utf8(response.body).map_err(|_| format!("{certificate}: not PEM"))?;
        if !chain_pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(format!("{certificate}: not a PEM certificate chain").into());
        }
        Ok(Issued { chain_pem, key_pem: key.serialize_pem() })
    }

    /// One authorisation: nothing to do if valid already; else its `kind` challenge answered,
    /// published, validated, withdrawn.
    fn authorize(&mut self, url: &str, kind: ChallengeKind, publish: &dyn Publish) -> Result<()> {
        let authorization = json_of(&self.post(url, None)?, "an authorization")?;
        let name = authorization["identifier"]["value"].as_str().unwrap_or_default().to_owned();
        match authorization["status"].as_str() {
            Some("valid") => return Ok(()),
            Some("pending") => {}
            other => return Err(format!("{url}: the authorization for {name} is {other:?}").into()),
        }
        let challenge = (authorization["challenges"].as_array().into_iter().flatten())
            .find(|challenge| challenge["type"] == kind.name())
            .ok_or_else(|| format!("{url}: no {} challenge for {name}", kind.name()))?;
        let (token, challenge_url) = match (challenge["token"].as_str(), challenge["url"].as_str()) {
            (Some(token), Some(challenge_url)) if is_token(token) => {
                (token.to_owned(), challenge_url.to_owned())
            }
            _ => return Err(format!("{url}: a malformed {} challenge", kind.name()).into()),
        };
        let key_authorization = self.key.key_authorization(&token);
        match kind {
            ChallengeKind::Http01 => publish.http01(&token, &key_authorization)?,
            ChallengeKind::TlsAlpn01 => {
                let (cert, key) = challenge_certificate(&name, &key_authorization)?;
                publish.tls_alpn01(&name, &cert, &key)?;
            }
        }
        info!("acme: {} challenge for {name} published; asking the CA to validate", kind.name());
        let validated = self
            .post(&challenge_url, Some(&json!({})))
            .and_then(|_| self.poll(url, &["valid"], &format!("the authorization for {name}")));
        publish.withdraw(&name, &token);
        validated.map(|_| info!("acme: {name} validated"))
    }

    /// POST-as-GET `url` until its status is one of `done` (returned), fails, or the polls run out.
    fn poll(&mut self, url: &str, done: &[&str], what: &str) -> Result<Value> {
        for _ in 0..POLLS {
            let response = self.post(url, None)?;
            let wait = response
                .retry_after()
                .map_or(POLL_WAIT, |seconds| Duration::from_secs(seconds.clamp(1, 10) as u64));
            let body = json_of(&response, what)?;
            match body["status"].as_str().unwrap_or_default() {
                status if done.contains(&status) => return Ok(body),
                "pending" | "processing" | "ready" => sleep(wait),
                status => {
                    let problem = problem_of(&body);
                    return Err(format!("{what} is {status}{problem}").into());
                }
            }
        }
        Err(format!("{what}: still not done after {POLLS} polls").into())
    }
}

/// What an invalid authorisation or order says went wrong.
fn problem_of(body: &Value) -> String {
    let errors = (body["challenges"].as_array().into_iter().flatten())
        .filter_map(|challenge| challenge.get("error"))
        .chain(body.get("error"));
    errors
        .map(|error| format!(": {}", error["detail"].as_str().unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("")
}

/// A token is base64url (RFC 8555 §8.1): safe as a file name and in a URL path.
fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

fn json_of(response: &Response, what: &str) -> Result<Value> {
    serde_json::from_slice(&response.body).map_err(|error| format!("{what}: not JSON: {error}").into())
}

/// The self-signed certificate a TLS-ALPN-01 validation for `name` must see (RFC 8737 §3):
/// `name` as its only SAN, and the critical acmeIdentifier extension holding the SHA-256 of
/// the key authorisation. As PEM, with its key.
pub fn challenge_certificate(
    name: &str,
    key_authorization: &str,
) -> std::result::Result<(String, String), String> {
    let digest = ring::digest::digest(&ring::digest::SHA256, key_authorization.as_bytes());
    let mut params =
        rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|error| error.to_string())?;
    params.custom_extensions.push(rcgen::CustomExtension::new_acme_identifier(digest.as_ref()));
    let key = rcgen::KeyPair::generate().map_err(|error| error.to_string())?;
    let cert = params.self_signed(&key).map_err(|error| error.to_string())?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_base64url_only() {
        assert!(is_token("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"));
        for bad in ["", "../x", "a/b", "a.b", "a b", ".hidden"] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_challenge_certificate_carries_the_digest_of_the_key_authorization() {
        let (cert, key) = challenge_certificate("example.org", "token.thumbprint").unwrap();
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let digest = ring::digest::digest(&ring::digest::SHA256, b"token.thumbprint");
        // id-pe-acmeIdentifier (1.3.6.1.5.5.7.1.31), critical, OCTET STRING { OCTET STRING digest }.
        let mut extension =
            vec![0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x01, 0x1f, 0x01, 0x01, 0xff];
        extension.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
        extension.extend_from_slice(digest.as_ref());
        assert!(
            der.windows(extension.len()).any(|window| window == extension),
            "no acmeIdentifier extension"
        );
        assert!(der.windows(11).any(|window| window == b"example.org"));
        assert!(key.contains("PRIVATE KEY"));
    }

    use rustls_pki_types::pem::PemObject;
}
