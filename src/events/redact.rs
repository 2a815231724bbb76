//! Scrubs failure messages before they go into an event.
//!
//! Upstream messages are already redacted by Infisical, but only for the passwords it generated
//! (`spec/lifecycle.md` §5.1); provider error bodies pass through verbatim. So an event message
//! is scrubbed twice: every secret rotator knows is replaced, and anything shaped like a
//! credential (`password=…`, `"token": "…"`, `Bearer …`, `scheme://user:pass@host`) is masked.
//! The result is capped at 1024 characters like Infisical's `lastRotationMessage`.

/// What replaces a secret: the 19 asterisks Infisical uses.
pub const MASK: &str = "*******************";

/// The longest message an event carries, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// Keys whose value is a secret, compared case-insensitively with `_` and `-` ignored.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "pwd",
    "pass",
    "secret",
    "clientsecret",
    "token",
    "accesstoken",
    "refreshtoken",
    "apikey",
    "secretaccesskey",
    "privatekey",
    "credential",
    "credentials",
    "authorization",
];

/// Scrubs `text`: known secrets, credential-shaped values, then the length cap.
pub fn redact_message(text: &str, known_secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for secret in known_secrets.iter().filter(|s| s.len() >= 4) {
        out = out.replace(secret, MASK);
    }
    let out = mask_url_passwords(&out);
    let out = mask_bearer(&out);
    let out = mask_key_values(&out);
    cap(&out, MAX_MESSAGE_CHARS)
}

/// Caps `text` at `max` characters: a longer text becomes its first `max - 3` and `...`.
pub fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(3)).collect();
    out.push_str("...");
    out
}

/// `scheme://user:password@host` → `scheme://user:*******************@host`.
fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace())
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(at), Some(colon)) if colon < at => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

/// `Bearer abc.def` → `Bearer *******************` (also `Basic`).
fn mask_bearer(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut words = text.split_inclusive(char::is_whitespace);
    while let Some(word) = words.next() {
        out.push_str(word);
        let scheme = word.trim_end().trim_start_matches(['"', '\'']);
        if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("basic"))
            && word.ends_with(char::is_whitespace)
            && let Some(credential) = words.next()
        {
            let trimmed = credential.trim_end();
            let kept = trimmed.len() - trimmed.trim_end_matches(['"', '\'', ',', ';', '}']).len();
            out.push_str(MASK);
            out.push_str(&trimmed[trimmed.len() - kept..]);
            out.push_str(&credential[trimmed.len()..]);
        }
    }
    out
}

/// Masks the value after a secret-named key: `password=x`, `password: x`, `"password":"x"`.
fn mask_key_values(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if !is_key_char(bytes[i]) || (i > 0 && is_key_char(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let key_end = i + bytes[i..].iter().take_while(|b| is_key_char(**b)).count();
        let key = &text[i..key_end];
        let Some(value_start) = value_start(bytes, key_end) else {
            i = key_end;
            continue;
        };
        if !is_secret_key(key) {
            i = key_end;
            continue;
        }
        let (start, end) = value_span(bytes, value_start);
        if end > start {
            out.push_str(&text[copied..start]);
            out.push_str(MASK);
            copied = end;
        }
        i = end.max(key_end);
    }
    out.push_str(&text[copied..]);
    out
}

fn is_key_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

fn is_secret_key(key: &str) -> bool {
    let normalized: String = key
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    SECRET_KEYS
        .iter()
        .any(|k| normalized == *k || (k.len() >= 5 && normalized.ends_with(k)))
}

/// After a key: an optional closing quote, spaces, then `=` or `:`, then spaces.
fn value_start(bytes: &[u8], mut i: usize) -> Option<usize> {
    if matches!(bytes.get(i), Some(b'"' | b'\'')) {
        i += 1;
    }
    while matches!(bytes.get(i), Some(b' ')) {
        i += 1;
    }
    if !matches!(bytes.get(i), Some(b'=' | b':')) {
        return None;
    }
    i += 1;
    while matches!(bytes.get(i), Some(b' ')) {
        i += 1;
    }
    Some(i)
}

/// The value's byte span: inside quotes when quoted, else up to a delimiter.
fn value_span(bytes: &[u8], start: usize) -> (usize, usize) {
    match bytes.get(start) {
        Some(&quote @ (b'"' | b'\'')) => {
            let mut end = start + 1;
            while end < bytes.len() && bytes[end] != quote {
                end += if bytes[end] == b'\\' { 2 } else { 1 };
            }
            (start + 1, end.min(bytes.len()))
        }
        _ => {
            let len = bytes[start..]
                .iter()
                .take_while(|b| !b.is_ascii_whitespace() && !matches!(b, b',' | b';' | b'&' | b'}'))
                .count();
            (start, start + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_secrets_are_replaced_everywhere() {
        let text = "login as app with Xy9-secret-value failed; Xy9-secret-value rejected";
        let out = redact_message(text, &["Xy9-secret-value"]);
        assert!(!out.contains("Xy9-secret-value"));
        assert_eq!(out.matches(MASK).count(), 2);
    }

    #[test]
    fn credential_shaped_values_are_masked() {
        let cases = [
            ("password=hunter2 user=app", "password=*******************"),
            ("PASSWORD: hunter2, next", "PASSWORD: *******************,"),
            (
                r#"{"clientSecret":"hunter2","id":"x"}"#,
                r#""clientSecret":"*******************""#,
            ),
            (
                "curl -H Bearer abc.def.ghi done",
                "Bearer *******************",
            ),
            (
                "postgres://app:hunter2@db:5432/x",
                "postgres://app:*******************@db:5432/x",
            ),
            ("api_key='hunter2'", "api_key='*******************'"),
        ];
        for (text, expected) in cases {
            let out = redact_message(text, &[]);
            assert!(
                !out.contains("hunter2") && !out.contains("abc.def"),
                "{text} -> {out}"
            );
            assert!(out.contains(expected), "{text} -> {out}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let text = "Infisical answered 500: Failed to connect to db:5432 (passes: 3, user: app) \
                    https://eu.infisical.com/api";
        assert_eq!(redact_message(text, &[]), text);
    }

    #[test]
    fn long_messages_are_capped_at_1024_characters() {
        let text = "é".repeat(2000);
        let out = redact_message(&text, &[]);
        assert_eq!(out.chars().count(), 1024);
        assert!(out.ends_with("..."));
        assert_eq!(redact_message("short", &[]), "short");
    }
}
