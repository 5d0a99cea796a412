//! With `server.auth = false` anyone who can reach the port may use the
//! API, and so may any web page the user opens: a page on another site can
//! send requests to `127.0.0.1:8000` (cross-site request forgery), or make
//! its own name resolve to it (DNS rebinding). Browsers always say which
//! host they meant (`Host`) and, for such requests, which page sent them
//! (`Origin`): both must name this machine.

use axum::http::{header, HeaderMap};

/// Whether `host` (no port) names this machine as a browser would reach it:
/// an IP address (a rebinding page has a name, never an address),
/// `localhost`, a `.localhost` name, or this machine's host name.
fn is_local_name(host: &str) -> bool {
    let host = host.trim_matches(['[', ']']).trim_end_matches('.');
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let host = host.to_ascii_lowercase();
    // Read once: this runs on every request of an auth-less server.
    static MACHINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let machine = MACHINE.get_or_init(pipeline_core::hostname);
    host == "localhost" || host.ends_with(".localhost") || machine.eq_ignore_ascii_case(&host)
}

/// The host part of `authority` (`host:port`, `[v6]:port`).
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

/// Refuses a request whose `Host` is a foreign name or whose `Origin` is
/// another site that is not in `allowed` (`server.cors_origins`); the
/// reason says which.
pub(crate) fn check_local(headers: &HeaderMap, allowed: &[String]) -> Result<(), String> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(host) = text(header::HOST) {
        if !is_local_name(host_of(host)) {
            return Err(format!(
                "Host {host:?} is not this machine (server.auth is off, so only local names are served)"
            ));
        }
    }
    if let Some(origin) = text(header::ORIGIN) {
        let authority = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.split('/').next().unwrap_or(""));
        let same = text(header::HOST).is_some_and(|host| host.eq_ignore_ascii_case(authority));
        let listed = allowed.iter().any(|a| a.eq_ignore_ascii_case(origin));
        if !same && !listed && !is_local_name(host_of(authority)) {
            return Err(format!(
                "Origin {origin:?} is another site (server.auth is off, so only this machine's pages may call the API)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(host: Option<&str>, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(host) = host {
            h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        if let Some(origin) = origin {
            h.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        h
    }

    #[test]
    fn only_this_machine_s_names_and_pages_pass() {
        for (host, origin) in [
            (Some("127.0.0.1:8000"), None),
            (Some("localhost:8000"), Some("http://localhost:8000")),
            (Some("[::1]:8000"), Some("http://[::1]:8000")),
            (Some("10.1.2.3:8000"), Some("http://10.1.2.3:8000")),
            (None, None),
        ] {
            assert_eq!(
                check_local(&headers(host, origin), &[]),
                Ok(()),
                "{host:?} {origin:?}"
            );
        }
        for (host, origin) in [
            (Some("evil.example:8000"), None),
            (Some("127.0.0.1:8000"), Some("https://evil.example")),
            (Some("localhost:8000"), Some("null")),
        ] {
            assert!(
                check_local(&headers(host, origin), &[]).is_err(),
                "{host:?} {origin:?}"
            );
        }
        let listed = ["https://app.example.com".to_string()];
        let from_app = headers(Some("127.0.0.1:8000"), Some("https://app.example.com"));
        assert_eq!(check_local(&from_app, &listed), Ok(()), "a listed origin");
        assert!(check_local(&from_app, &[]).is_err(), "not listed");
    }
}
