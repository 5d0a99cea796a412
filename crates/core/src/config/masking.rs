//! Secrets kept out of what is printed: URLs with their passwords and
//! secret-looking parameters masked, and the sections that hold
//! credentials with hand-written `Debug`.

use super::*;

// Hand-written Debug for the sections that hold credentials, so that a config
// printed in a log or a panic message does not leak them.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &self.url.as_deref().map(mask_url))
            .field("max_connections", &self.max_connections)
            .finish()
    }
}

impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("url", &self.url.as_deref().map(mask_url))
            .field(
                "result_backend",
                &self.result_backend.as_deref().map(mask_url),
            )
            .field("queue", &self.queue)
            .field("connect_timeout_secs", &self.connect_timeout_secs)
            .field("visibility_timeout_secs", &self.visibility_timeout_secs)
            .field("prefetch_multiplier", &self.prefetch_multiplier)
            .finish()
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("data_dir", &self.data_dir)
            .field("output_dir", &self.output_dir)
            .field("install_dir", &self.install_dir)
            .field("url", &self.url.as_deref().map(mask_url))
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

impl fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelConfig")
            .field("path", &self.path)
            .field("name", &self.name)
            .field("device", &self.device)
            .field("compute_type", &self.compute_type)
            .field("beam_size", &self.beam_size)
            .field("threads", &self.threads)
            .field("language", &self.language)
            .field("word_timestamps", &self.word_timestamps)
            .field("vad_filter", &self.vad_filter)
            .field("mode", &self.mode)
            .field("batch_size", &self.batch_size)
            .field("initial_prompt", &self.initial_prompt)
            .field("hotwords", &self.hotwords)
            .field("endpoint", &self.endpoint.as_deref().map(mask_url))
            .field("api_key", &self.api_key.as_ref().map(|_| MASK))
            .finish()
    }
}

impl fmt::Debug for WebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|u| mask_url(u)).collect();
        f.debug_struct("WebhooksConfig")
            .field("urls", &urls)
            .field("secret", &self.secret.as_ref().map(|_| MASK))
            .field("timeout_secs", &self.timeout_secs)
            .field("retry_period_secs", &self.retry_period_secs)
            .field("allow_private_targets", &self.allow_private_targets)
            .finish()
    }
}

/// Replaces the password of a URL (`postgres://user:secret@host/db` →
/// `postgres://user:****@host/db`) and secret-looking query parameters.
pub fn mask_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let rest = &url[rest_start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..rest_start]);
    match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            match userinfo.split_once(':') {
                Some((user, _)) => {
                    out.push_str(user);
                    out.push(':');
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push_str(&authority[at..]);
        }
        None => out.push_str(authority),
    }
    let tail = &rest[authority_end..];
    match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            out.push_str(path);
            out.push('?');
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((name, _)) if is_secret_param(name) => format!("{name}={MASK}"),
                    _ => param.to_string(),
                })
                .collect();
            out.push_str(&params.join("&"));
            if let Some(f) = fragment {
                out.push('#');
                out.push_str(f);
            }
        }
        None => out.push_str(tail),
    }
    out
}

pub(super) fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    ["password", "passwd", "secret", "token", "api_key", "apikey"]
        .iter()
        .any(|s| name.contains(s))
}
