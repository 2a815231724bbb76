//! Redaction of what goes into span attributes and exception events: URLs lose credentials and
//! secret-looking query values, free text loses bearer tokens, JWTs and `secret=…` pairs.
//!
//! This is a second line of defence. The first is that secrets live in `SecretString` and are
//! never formatted; error texts that reach spans are the same ones a caller already gets.

/// The longest exception message recorded; longer texts are cut (on a char boundary).
const MAX_MESSAGE_CHARS: usize = 512;

/// Replaces redacted values.
pub const REDACTED: &str = "REDACTED";

/// Query or text keys whose values are treated as secrets (matched case-insensitively, as
/// substrings, so `clientSecret`, `access_token` and `X-Amz-Signature` are all covered).
const SENSITIVE_KEYS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "apikey",
    "api_key",
    "api-key",
    "signature",
    "sig",
    "credential",
    "authorization",
];

/// Whether a key names a secret.
pub fn is_sensitive_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE_KEYS.iter().any(|s| key.contains(s))
}

/// `url.full` per the HTTP semantic conventions: no user info, sensitive query values replaced.
pub fn url_full(url: &reqwest::Url, extra_query: &[(&str, &str)]) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    let existing: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if existing.is_empty() && extra_query.is_empty() {
        return url.to_string();
    }
    url.set_query(None);
    {
        let mut pairs = url.query_pairs_mut();
        let all = existing
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain(extra_query.iter().copied());
        for (k, v) in all {
            pairs.append_pair(k, if is_sensitive_key(k) { REDACTED } else { v });
        }
    }
    url.to_string()
}

/// Free text for an exception event or a status description: bearer tokens, JWTs and
/// `key=value` / `key: value` pairs with a sensitive key are replaced, and the text is bounded.
pub fn message(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_MESSAGE_CHARS));
    let mut previous_was_bearer = false;
    for piece in text.split_inclusive(char::is_whitespace) {
        let word = piece.trim_end();
        let gap = &piece[word.len()..];
        let redacted = if previous_was_bearer && !word.is_empty() {
            Some(REDACTED.to_owned())
        } else {
            redact_word(word)
        };
        previous_was_bearer = word.eq_ignore_ascii_case("bearer");
        out.push_str(redacted.as_deref().unwrap_or(word));
        out.push_str(gap);
    }
    if out.chars().count() > MAX_MESSAGE_CHARS {
        out = out.chars().take(MAX_MESSAGE_CHARS).collect();
        out.push('…');
    }
    out
}

fn redact_word(word: &str) -> Option<String> {
    let core = word.trim_matches(|c: char| matches!(c, '"' | '\'' | ',' | ';' | '(' | ')'));
    if looks_like_jwt(core) {
        return Some(word.replacen(core, REDACTED, 1));
    }
    for sep in ['=', ':'] {
        if let Some((key, value)) = core.split_once(sep) {
            let key_name = key.trim_matches(|c: char| !c.is_ascii_alphanumeric());
            if !value.is_empty() && !key_name.is_empty() && is_sensitive_key(key_name) {
                return Some(word.replacen(core, &format!("{key}{sep}{REDACTED}"), 1));
            }
        }
    }
    None
}

/// Three base64url segments, the first one a JSON object (`eyJ` = `{"`).
fn looks_like_jwt(s: &str) -> bool {
    let segments: Vec<&str> = s.split('.').collect();
    segments.len() == 3
        && s.starts_with("eyJ")
        && segments.iter().all(|seg| {
            !seg.is_empty()
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_user_info_and_secret_query_values() {
        let url =
            reqwest::Url::parse("https://user:pw@infisical.example/api/v2/x?sig=abc").expect("url");
        let full = url_full(&url, &[("projectId", "p-1"), ("access_token", "t0k3n")]);
        assert_eq!(
            full,
            "https://infisical.example/api/v2/x?sig=REDACTED&projectId=p-1&access_token=REDACTED"
        );
        let plain = reqwest::Url::parse("http://127.0.0.1:8080/api/v2/y").expect("url");
        assert_eq!(url_full(&plain, &[]), "http://127.0.0.1:8080/api/v2/y");
    }

    #[test]
    fn messages_lose_tokens_and_secret_pairs() {
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl";
        let text =
            format!("login failed: Bearer abc.def token={jwt} clientSecret=\"hunter2\" user=app");
        let out = message(&text);
        for secret in ["abc.def", jwt, "hunter2", "eyJ"] {
            assert!(!out.contains(secret), "{secret} leaked in {out}");
        }
        assert!(out.contains("user=app") && out.starts_with("login failed:"));
    }

    #[test]
    fn ordinary_error_texts_are_kept_and_long_ones_bounded() {
        let text =
            "Infisical answered 500: Infisical encountered an issue while generating credentials";
        assert_eq!(message(text), text);
        assert!(message(&"x ".repeat(1000)).chars().count() <= MAX_MESSAGE_CHARS + 1);
    }
}
