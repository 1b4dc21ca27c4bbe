//! The signatures of ACME requests (RFC 8555 §6.2): every POST is a flattened JWS, signed
//! with the account's ECDSA P-256 key (ES256, RFC 7518 §3.4), naming the key by its JWK for
//! `newAccount` and by the account's URL (`kid`) after. The key's JWK thumbprint (RFC 7638)
//! is the second half of every key authorisation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

/// base64url without padding, as JOSE writes every binary field.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The account key.
pub struct AccountKey {
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

/// How a request names the key that signed it.
pub enum Signer<'a> {
    /// `newAccount`: the public key itself.
    Jwk,
    /// Everything after: the account's URL.
    Kid(&'a str),
}

impl AccountKey {
    /// A new key, and its PKCS#8 document to store.
    pub fn generate() -> Result<(AccountKey, Vec<u8>), String> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "cannot generate an account key".to_owned())?;
        let key = AccountKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// A stored key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<AccountKey, String> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|error| format!("not an ECDSA P-256 PKCS#8 key: {error}"))?;
        Ok(AccountKey { pair, rng })
    }

    /// The public key as a JWK, its members in the order RFC 7638 hashes them.
    pub fn jwk(&self) -> Value {
        // An uncompressed point: 0x04, then x and y, 32 bytes each.
        let point = self.pair.public_key().as_ref();
        json!({ "crv": "P-256", "kty": "EC", "x": b64(&point[1..33]), "y": b64(&point[33..65]) })
    }

    /// The JWK thumbprint (RFC 7638 §3): SHA-256 of the required members, sorted, no spaces.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap_or_default(),
            jwk["y"].as_str().unwrap_or_default()
        );
        b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
    }

    /// What a challenge's `token` is answered with (RFC 8555 §8.1).
    pub fn key_authorization(&self, token: &str) -> String {
        format!("{token}.{}", self.thumbprint())
    }

    /// The request body for `url`: `payload` as JSON, or POST-as-GET's empty payload for `None`.
    pub fn sign(
        &self,
        url: &str,
        nonce: &str,
        signer: &Signer<'_>,
        payload: Option<&Value>,
    ) -> Result<String, String> {
        let mut protected = json!({ "alg": "ES256", "nonce": nonce, "url": url });
        match signer {
            Signer::Jwk => protected["jwk"] = self.jwk(),
            Signer::Kid(kid) => protected["kid"] = json!(kid),
        }
        let protected = b64(protected.to_string().as_bytes());
        let payload = payload.map(|payload| b64(payload.to_string().as_bytes())).unwrap_or_default();
        let signed = format!("{protected}.{payload}");
        let signature = (self.pair.sign(&self.rng, signed.as_bytes()))
            .map_err(|_| "cannot sign an ACME request".to_owned())?;
        Ok(json!({ "protected": protected, "payload": payload, "signature": b64(signature.as_ref()) })
            .to_string())
    }

    /// The `externalAccountBinding` of a `newAccount` (RFC 8555 §7.3.4): this key's JWK, signed
    /// with the CA's MAC key (`hmac_key`, base64url) under its key ID.
    pub fn external_binding(&self, url: &str, kid: &str, hmac_key: &str) -> Result<Value, String> {
        let secret = URL_SAFE_NO_PAD
            .decode(hmac_key.trim_end_matches('='))
            .map_err(|error| format!("the EAB MAC key is not base64url: {error}"))?;
        let protected = b64(json!({ "alg": "HS256", "kid": kid, "url": url }).to_string().as_bytes());
        let payload = b64(self.jwk().to_string().as_bytes());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let tag = ring::hmac::sign(&key, format!("{protected}.{payload}").as_bytes());
        Ok(json!({ "protected": protected, "payload": payload, "signature": b64(tag.as_ref()) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    fn decode(field: &Value) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(field.as_str().unwrap()).unwrap()
    }

    #[test]
    fn a_request_verifies_with_the_jwk_it_names_and_says_where_it_goes() {
        let (key, pkcs8) = AccountKey::generate().unwrap();
        let payload = json!({ "termsOfServiceAgreed": true });
        let body: Value = serde_json::from_str(
            &key.sign("https://ca/new-acct", "n0nce", &Signer::Jwk, Some(&payload)).unwrap(),
        )
        .unwrap();
        let protected: Value = serde_json::from_slice(&decode(&body["protected"])).unwrap();
        assert_eq!(protected["alg"], "ES256");
        assert_eq!(protected["nonce"], "n0nce");
        assert_eq!(protected["url"], "https://ca/new-acct");
        assert_eq!(serde_json::from_slice::<Value>(&decode(&body["payload"])).unwrap(), payload);
        // Verified with the public key rebuilt from the JWK alone, as the CA does.
        let jwk = &protected["jwk"];
        let point = [&[4u8][..], &decode(&jwk["x"]), &decode(&jwk["y"])].concat();
        let signed = format!("{}.{}", body["protected"].as_str().unwrap(), body["payload"].as_str().unwrap());
        let verifier = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
        verifier.verify(signed.as_bytes(), &decode(&body["signature"])).expect("a valid ES256 signature");
        // Stored and loaded again: the same key.
        assert_eq!(AccountKey::from_pkcs8(&pkcs8).unwrap().thumbprint(), key.thumbprint());

        let as_get: Value = serde_json::from_str(
            &key.sign("https://ca/order/1", "n", &Signer::Kid("https://ca/acct/7"), None).unwrap(),
        )
        .unwrap();
        assert_eq!(as_get["payload"], "");
        let protected: Value = serde_json::from_slice(&decode(&as_get["protected"])).unwrap();
        assert_eq!(protected["kid"], "https://ca/acct/7");
        assert!(protected.get("jwk").is_none());
    }

    #[test]
    fn the_thumbprint_is_sha256_of_the_canonical_jwk() {
        let (key, _) = AccountKey::generate().unwrap();
        let jwk = key.jwk();
        // serde_json's map keeps keys sorted, which is RFC 7638's order for these members.
        let canonical = jwk.to_string();
        assert!(canonical.starts_with(r#"{"crv":"P-256","kty":"EC","x":""#), "{canonical}");
        let digest = ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes());
        assert_eq!(key.thumbprint(), b64(digest.as_ref()));
        assert_eq!(key.thumbprint().len(), 43);
        assert_eq!(key.key_authorization("tok"), format!("tok.{}", key.thumbprint()));
    }

    #[test]
    fn the_external_binding_is_the_jwk_under_the_cas_mac() {
        let (key, _) = AccountKey::generate().unwrap();
        // pebble's example EAB key.
        let mac = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
        let binding = key.external_binding("https://ca/new-acct", "kid-1", mac).unwrap();
        let protected: Value = serde_json::from_slice(&decode(&binding["protected"])).unwrap();
        assert_eq!(protected, json!({ "alg": "HS256", "kid": "kid-1", "url": "https://ca/new-acct" }));
        assert_eq!(serde_json::from_slice::<Value>(&decode(&binding["payload"])).unwrap(), key.jwk());
        let secret = URL_SAFE_NO_PAD.decode(mac).unwrap();
        let signed =
            format!("{}.{}", binding["protected"].as_str().unwrap(), binding["payload"].as_str().unwrap());
        let tag = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        ring::hmac::verify(&tag, signed.as_bytes(), &decode(&binding["signature"]))
            .expect("a valid HS256 MAC");
        assert!(key.external_binding("u", "k", "not base64!").is_err());
    }
}
