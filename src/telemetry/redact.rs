//! Redaction of what must not reach a log line or a printed configuration.

/// Keeps a URL's scheme, host and port; any credentials are dropped and the path, query and
/// fragment (where calendar tokens and webhook secrets live) become `/***`. Text that is not
/// an absolute URL becomes `***`.
pub fn redact_url(url: &str) -> String {
    let Ok(parsed) = reqwest::Url::parse(url.trim()) else {
        return "***".into();
    };
    let Some(host) = parsed.host_str() else {
        return format!("{}:***", parsed.scheme());
    };
    let mut out = format!("{}://{host}", parsed.scheme());
    if let Some(port) = parsed.port() {
        out.push_str(&format!(":{port}"));
    }
    let bare = parsed.path() == "/" && parsed.query().is_none() && parsed.fragment().is_none();
    if bare {
        if url.trim().ends_with('/') {
            out.push('/');
        }
    } else {
        out.push_str("/***");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_path_and_query() {
        assert_eq!(
            redact_url("https://oncall.example.com/api/v1/schedules/S1/export?token=s3cret"),
            "https://oncall.example.com/***"
        );
        assert_eq!(
            redact_url("http://user:pa%40ss@gw.example.com:8080/send?to=%2B1555#x"),
            "http://gw.example.com:8080/***"
        );
        assert_eq!(
            redact_url("https://gw.example.com/?key=1"),
            "https://gw.example.com/***"
        );
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/XXXX"),
            "https://hooks.slack.com/***"
        );
        assert_eq!(
            redact_url("https://gw.example.com/"),
            "https://gw.example.com/"
        );
        assert_eq!(
            redact_url("https://gw.example.com"),
            "https://gw.example.com"
        );
        assert_eq!(
            redact_url("/api/v1/schedules/S1/export?token=s3cret"),
            "***"
        );
        assert_eq!(redact_url("not a url"), "***");
        for url in [
            "https://a:b@h/x?token=t",
            "postgres://relay:hunter2@db:5432/oncall?sslmode=require",
        ] {
            let shown = redact_url(url);
            assert!(
                !shown.contains("token") && !shown.contains("hunter2") && !shown.contains(":b@"),
                "{shown}"
            );
        }
    }
}
