//! Webhook delivery. The store keeps an outbox of events written with the
//! transitions they report; a [`Relay`] turns them into one delivery per
//! endpoint and POSTs them, signed, retrying with exponential backoff until
//! the retry period ends. Each endpoint gets its events in order: a
//! delivery waits while an older one to the same endpoint is pending.
//!
//! Deliveries run on their own tasks with a timeout, so a receiver that is
//! down or slow delays only its own events, never the processing of audio.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use pipeline_store::{AttemptOutcome, Store, StoreError, WebhookDelivery, WebhookEndpoint};
use sha2::Sha256;
use std::future::Future;
use std::time::Duration;

mod guard;
pub use guard::is_public;

/// The header that carries the signature: `t=<unix seconds>,v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Pipeline-Signature";

/// How often an idle relay looks at the outbox.
const POLL: Duration = Duration::from_millis(250);

/// Events fanned out per database round.
const FAN_OUT_BATCH: u32 = 200;

/// Endpoints served in parallel per pass.
const ENDPOINTS_PER_PASS: u32 = 32;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// What a relay sends where.
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// Endpoints that receive every file's events.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Time allowed for one request.
    pub timeout: Duration,
    /// How long a delivery is retried before it is marked FAILED.
    pub retry_period: Duration,
    /// Whether endpoints may resolve to loopback, private or link-local
    /// addresses (`webhooks.allow_private_targets`).
    pub allow_private_targets: bool,
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp`:
/// HMAC-SHA256 with `secret` over `"{timestamp}.{body}"`, in hex.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &str, timestamp: i64, body: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is not `t=<seconds>,v1=<hex>`")]
    Malformed,
    #[error("the signature does not match the body")]
    Mismatch,
    #[error("the signature's timestamp is {0} s away from now")]
    Stale(i64),
}

/// Checks a [`SIGNATURE_HEADER`] value against `body`, refusing timestamps
/// further than `tolerance` from `now` (a replayed request).
pub fn verify(
    secret: &str,
    header: &str,
    body: &str,
    now: DateTime<Utc>,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", v)) => signatures.push(v.to_ascii_lowercase()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::encode(mac(secret, timestamp, body));
    // Compare every byte so that timing says nothing about a near miss.
    let matches = signatures.iter().any(|s| {
        s.len() == expected.len()
            && s.bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    let skew = (now.timestamp() - timestamp).abs();
    if skew > i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX) {
        return Err(SignatureError::Stale(skew));
    }
    Ok(())
}

/// Checks that `url` is one the relay can send to: http or https, with a
/// host, parsed by the same HTTP library that sends. The error says why not.
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err("expected an http:// or https:// URL with a host".to_string());
    }
    let parsed = url
        .parse::<ureq::http::Uri>()
        .map_err(|e| format!("not a URL ({e})"))?;
    match (parsed.scheme_str(), parsed.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(()),
        _ => Err("expected an http:// or https:// URL with a host".to_string()),
    }
}

/// [`check_url`], and, unless `allow_private` is set, refuses a host that
/// is a literal non-public address (names are checked when they are
/// resolved, at each delivery).
pub fn check_target(url: &str, allow_private: bool) -> Result<(), String> {
    check_url(url)?;
    if allow_private {
        return Ok(());
    }
    let host = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .unwrap_or_default();
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) if !is_public(ip) => Err(format!(
            "{ip} is not a public address (set webhooks.allow_private_targets to send there)"
        )),
        _ if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") => Err(
            "localhost is not a public address (set webhooks.allow_private_targets to send there)"
                .to_string(),
        ),
        _ => Ok(()),
    }
}

/// When to try again after `attempts` failed attempts, or `None` once the
/// delivery has been retried for `retry_period` since it was created.
pub fn next_attempt(
    created_at: DateTime<Utc>,
    attempts: u32,
    now: DateTime<Utc>,
    retry_period: Duration,
) -> Option<DateTime<Utc>> {
    let backoff = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(20)).min(MAX_BACKOFF);
    let at = now + chrono::Duration::from_std(backoff).ok()?;
    let give_up = created_at + chrono::Duration::from_std(retry_period).ok()?;
    (now < give_up).then_some(at.min(give_up))
}

/// Delivers the outbox of one store.
#[derive(Clone)]
pub struct Relay {
    store: Store,
    settings: RelaySettings,
    agent: ureq::Agent,
}

impl Relay {
    /// A relay for `store`'s outbox.
    pub fn new(store: Store, settings: RelaySettings) -> Relay {
        let config = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            // A redirect is an answer, not an instruction: following it
            // would let any endpoint send us to an address of its choice.
            .max_redirects(0)
            // Through a proxy the address check would judge the proxy.
            .proxy(None)
            .user_agent(concat!("pipeline-manager/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(
            config,
            ureq::unversioned::transport::DefaultConnector::default(),
            guard::PublicOnly::new(settings.allow_private_targets),
        );
        Relay {
            store,
            settings,
            agent,
        }
    }

    /// Fans out new events and makes one attempt at every due delivery
    /// that heads its endpoint's line; returns how many were attempted.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        while self
            .store
            .fan_out_webhook_events(&self.settings.endpoints, FAN_OUT_BATCH)
            .await?
            == FAN_OUT_BATCH as usize
        {}
        let hold = self.settings.timeout + Duration::from_secs(30);
        let due = self
            .store
            .take_due_webhook_deliveries(ENDPOINTS_PER_PASS, hold)
            .await?;
        let attempted = due.len();
        let sends: Vec<_> = due
            .into_iter()
            .map(|delivery| {
                let agent = self.agent.clone();
                tokio::task::spawn_blocking(move || {
                    let outcome = send(&agent, &delivery);
                    (delivery, outcome)
                })
            })
            .collect();
        for send in sends {
            let Ok((delivery, result)) = send.await else {
                continue;
            };
            let outcome = match result {
                Ok(status_code) => AttemptOutcome::Delivered { status_code },
                Err((status_code, error)) => AttemptOutcome::Failed {
                    status_code,
                    error,
                    retry_at: next_attempt(
                        delivery.created_at,
                        delivery.attempts + 1,
                        Utc::now(),
                        self.settings.retry_period,
                    ),
                },
            };
            self.store
                .finish_webhook_attempt(delivery.id, &outcome)
                .await?;
        }
        Ok(attempted)
    }

    /// Delivers until `stop` completes. Database faults are reported and
    /// retried; they never end the relay.
    pub async fn run(self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        loop {
            let idle = match self.pass().await {
                Ok(attempted) => attempted == 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook relay");
                    true
                }
            };
            // After a busy pass, only look whether to stop before the next.
            let pause = if idle { POLL } else { Duration::ZERO };
            tokio::select! {
                biased;
                _ = &mut stop => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Delivers, retrying on schedule, until nothing is pending or `limit`
    /// has passed: what a short-lived command does before it exits.
    pub async fn drain(&self, limit: Duration) -> Result<(), StoreError> {
        let deadline = Utc::now() + chrono::Duration::from_std(limit).unwrap_or_default();
        while Utc::now() < deadline {
            if self.pass().await? > 0 {
                continue;
            }
            match self.store.next_webhook_attempt_at().await? {
                Some(at) if at <= deadline => tokio::time::sleep(POLL).await,
                _ => return Ok(()),
            }
        }
        Ok(())
    }
}

/// POSTs one delivery; the status code on a 2xx, else the code (if any
/// answer came) and what went wrong.
fn send(agent: &ureq::Agent, delivery: &WebhookDelivery) -> Result<u16, (Option<u16>, String)> {
    let mut request = agent
        .post(&delivery.url)
        .header("Content-Type", "application/json")
        .header("X-Pipeline-Event", &delivery.event)
        .header("X-Pipeline-Delivery", delivery.event_id.to_string());
    if let Some(secret) = &delivery.secret {
        let signature = sign(secret, Utc::now().timestamp(), &delivery.payload);
        request = request.header(SIGNATURE_HEADER, signature);
    }
    match request.send(delivery.payload.as_bytes()) {
        Ok(response) => {
            let code = response.status().as_u16();
            if (200..300).contains(&code) {
                Ok(code)
            } else if (300..400).contains(&code) {
                Err((
                    Some(code),
                    format!(
                        "the endpoint answered {} (redirects are not followed)",
                        response.status()
                    ),
                ))
            } else {
                Err((
                    Some(code),
                    format!("the endpoint answered {}", response.status()),
                ))
            }
        }
        Err(e) => Err((None, coarse(&e))),
    }
}

/// What went wrong, in words that say nothing of what answered: a
/// delivery's error is shown to whoever made the upload.
fn coarse(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::PermissionDenied => e.to_string(),
        ureq::Error::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
            std::io::ErrorKind::TimedOut => "timed out".to_string(),
            _ => "connection failed".to_string(),
        },
        ureq::Error::Timeout(_) => "timed out".to_string(),
        ureq::Error::HostNotFound => "host not found".to_string(),
        ureq::Error::ConnectionFailed => "connection failed".to_string(),
        _ => "the request failed".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_tampering_is_caught() {
        let now = Utc::now();
        let header = sign("s3cret", now.timestamp(), r#"{"a":1}"#);
        assert!(header.starts_with(&format!("t={},v1=", now.timestamp())));
        let tolerance = Duration::from_secs(300);
        assert_eq!(
            verify("s3cret", &header, r#"{"a":1}"#, now, tolerance),
            Ok(())
        );
        assert_eq!(
            verify("s3cret", &header, r#"{"a":2}"#, now, tolerance),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("other", &header, r#"{"a":1}"#, now, tolerance),
            Err(SignatureError::Mismatch)
        );
        let later = now + chrono::Duration::seconds(301);
        assert_eq!(
            verify("s3cret", &header, r#"{"a":1}"#, later, tolerance),
            Err(SignatureError::Stale(301))
        );
        assert_eq!(
            verify("s3cret", "v1=00", "", now, tolerance),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn known_vector_matches_an_independent_hmac() {
        // python3 -c 'import hmac,hashlib;print(hmac.new(b"key",b"1700000000.{}",hashlib.sha256).hexdigest())'
        assert_eq!(
            sign("key", 1_700_000_000, "{}"),
            "t=1700000000,v1=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae"
        );
    }

    #[test]
    fn only_http_urls_with_a_host_are_endpoints() {
        assert_eq!(check_url("http://127.0.0.1:8080/hooks"), Ok(()));
        assert_eq!(check_url("https://hooks.example.com"), Ok(()));
        for bad in [
            "http://",
            "ftp://host/x",
            "HTTP://host",
            "hooks.example.com",
            "http://a b/",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn literal_private_targets_are_refused_unless_allowed() {
        for bad in [
            "http://127.0.0.1:8080/hooks",
            "http://10.0.0.1/x",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:9000/",
            "http://localhost:3000/",
            "http://api.localhost/",
        ] {
            assert!(check_target(bad, false).is_err(), "{bad} accepted");
            assert_eq!(
                check_target(bad, true),
                Ok(()),
                "{bad} with private allowed"
            );
        }
        assert_eq!(check_target("https://hooks.example.com/x", false), Ok(()));
        assert_eq!(check_target("http://8.8.8.8/x", false), Ok(()));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_stops_after_the_period() {
        let created = Utc::now();
        let period = Duration::from_secs(3600);
        let wait = |attempts| {
            next_attempt(created, attempts, created, period).map(|at| (at - created).num_seconds())
        };
        assert_eq!(wait(1), Some(1));
        assert_eq!(wait(2), Some(2));
        assert_eq!(wait(5), Some(16));
        assert_eq!(wait(30), Some(600));
        let late = created + chrono::Duration::seconds(3600);
        assert_eq!(next_attempt(created, 3, late, period), None);
        // The last retry is never scheduled past the period.
        let near = created + chrono::Duration::seconds(3599);
        assert_eq!(
            next_attempt(created, 10, near, period),
            Some(created + chrono::Duration::seconds(3600))
        );
    }
}
