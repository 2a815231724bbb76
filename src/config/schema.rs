//! The shape of the configuration file, checked before serde sees it.
//!
//! serde stops at the first problem and quotes the offending value (`invalid type: string
//! "<value>", expected u32`), which would echo a mistyped secret and hide every later problem.
//! This walk knows every key and its TOML type, so it reports all of them at once, each by its
//! key path, never by value, and removes the bad entries so validation can go on and report the
//! rest. Unknown keys name the closest known one. [`Lines`] maps key paths back to file lines.
//!
//! The schema must follow the raw structs of `config.rs`, `security.rs` and `registry.rs`: a key
//! added there and not here is refused as unknown, and the sample `deploy/rotator.toml` (every
//! key) is parsed by a test, so drift fails a test rather than a user.

use std::collections::HashMap;

use crate::config::ConfigProblem;

/// What a key holds.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    /// A string.
    Str,
    /// A secret: a string, often an `env:NAME` / `file:PATH` reference.
    Secret,
    /// A whole number within bounds (inclusive).
    Int(i64, i64),
    /// `true` or `false`.
    Bool,
    /// A list of strings.
    StrList,
    /// A table with these keys.
    Table(&'static [Field]),
    /// An array of tables (`[[name]]`) with these keys.
    Tables(&'static [Field]),
    /// An array of tables whose other keys belong to a driver (checked by `local::check`).
    OpenTables(&'static [Field]),
    /// A table checked by its own reader (rotation parameters, secrets mappings).
    AnyTable,
}

/// One key of a table.
pub(super) struct Field(pub &'static str, pub Kind);

const U32: Kind = Kind::Int(0, u32::MAX as i64);
const U64: Kind = Kind::Int(0, i64::MAX);

const INFISICAL: &[Field] = &[
    Field("url", Kind::Str),
    Field("client_id", Kind::Str),
    Field("client_secret", Kind::Secret),
    Field("token", Kind::Secret),
    Field("ca_file", Kind::Str),
    Field("organization_slug", Kind::Str),
    Field("request_timeout_seconds", U64),
];

const STREAM: &[Field] = &[
    Field("name", Kind::Str),
    Field("max_age_seconds", U64),
    Field("storage", Kind::Str),
    Field("replicas", U32),
    Field("duplicate_window_seconds", U64),
];

const NATS: &[Field] = &[
    Field("url", Kind::Str),
    Field("user", Kind::Str),
    Field("password", Kind::Secret),
    Field("token", Kind::Secret),
    Field("creds_file", Kind::Str),
    Field("nkey_seed", Kind::Secret),
    Field("tls_ca_file", Kind::Str),
    Field("tls_required", Kind::Bool),
    Field("subject_prefix", Kind::Str),
    Field("stream", Kind::Table(STREAM)),
];

const EVENTS: &[Field] = &[
    Field("outbox_retention_seconds", U64),
    Field("unpublished_cap_without_nats", U64),
    Field("relay_poll_interval_seconds", U64),
    Field("backlog_log_interval_seconds", U64),
    Field("relay_lease_ttl_seconds", U64),
];

const LOCAL: &[Field] = &[
    Field("lease_ttl_seconds", U64),
    Field("lease_renew_seconds", U64),
    Field("scan_interval_seconds", U64),
];

const TLS: &[Field] = &[
    Field("cert_file", Kind::Str),
    Field("key_file", Kind::Str),
    Field("client_ca_file", Kind::Str),
    Field("client_auth_optional", Kind::Bool),
];

const GRANT: &[Field] = &[
    Field("actions", Kind::StrList),
    Field("types", Kind::StrList),
    Field("rotations", Kind::StrList),
];

const IDENTITY: &[Field] = &[
    Field("name", Kind::Str),
    Field("token_sha256", Kind::Str),
    Field("cert_identity", Kind::Str),
    Field("permissions", Kind::Tables(GRANT)),
];

const AUTH: &[Field] = &[
    Field("mode", Kind::Str),
    Field("open_health", Kind::Bool),
    Field("open_reflection", Kind::Bool),
    Field("allow_plaintext_tokens", Kind::Bool),
    Field("identities", Kind::Tables(IDENTITY)),
];

const NETWORK: &[Field] = &[Field("deny_private_addresses", Kind::Bool)];

const CONNECTION: &[Field] = &[
    Field("name", Kind::Str),
    Field("app", Kind::Str),
    Field("host", Kind::Str),
    Field("port", Kind::Int(0, u16::MAX as i64)),
    Field("database", Kind::Str),
    Field("username", Kind::Str),
    Field("password", Kind::Secret),
    Field("tls", Kind::Str),
    Field("ca_file", Kind::Str),
    Field("max_parallel_rotations", U32),
];

const ROTATION: &[Field] = &[
    Field("id", Kind::Str),
    Field("name", Kind::Str),
    Field("type", Kind::Str),
    Field("connection", Kind::Str),
    Field("parameters", Kind::AnyTable),
    Field("secrets_mapping", Kind::AnyTable),
    Field("rotation_interval_days", U32),
    Field("rotate_at_utc", Kind::Str),
    Field("auto_rotation", Kind::Bool),
    Field("project_id", Kind::Str),
    Field("environment", Kind::Str),
    Field("folder_path", Kind::Str),
    Field("description", Kind::Str),
    Field("temporary_parameters", Kind::Table(TEMPORARY_PARAMETERS)),
    Field("sinks", Kind::Tables(SINK)),
    Field("consumers", Kind::StrList),
    Field("handover_grace_seconds", U64),
];

/// A rotation's sink; which keys a kind takes is checked by `config::sinks`.
const SINK: &[Field] = &[
    Field("name", Kind::Str),
    Field("kind", Kind::Str),
    Field("path", Kind::Str),
    Field("format", Kind::Str),
    Field("template", Kind::Str),
    Field("mode", Kind::Str),
    Field("owner", Kind::Str),
    Field("command", Kind::StrList),
    Field("timeout_seconds", U64),
    Field("secret_id", Kind::Str),
    Field("region", Kind::Str),
    Field("endpoint", Kind::Str),
    Field("access_key_id", Kind::Secret),
    Field("secret_access_key", Kind::Secret),
    Field("project_id", Kind::Str),
    Field("environment", Kind::Str),
    Field("secret_path", Kind::Str),
    Field("rename", Kind::AnyTable),
    Field("client_id", Kind::Str),
    Field("client_secret", Kind::Secret),
    Field("namespace", Kind::Str),
    Field("secret_name", Kind::Str),
    Field("keys", Kind::AnyTable),
    Field("key", Kind::Str),
    Field("restart_deployments", Kind::StrList),
    Field("kubeconfig", Kind::Str),
    Field("context", Kind::Str),
    Field("service_account_dir", Kind::Str),
];

/// A rotation's create-only parameters (Infisical's `temporaryParameters`).
const TEMPORARY_PARAMETERS: &[Field] = &[Field("password", Kind::Secret)];

/// Every key of the file, at the top level.
pub(super) const ROOT: &[Field] = &[
    Field("listen", Kind::Str),
    Field("admin_listen", Kind::Str),
    Field("data_dir", Kind::Str),
    Field("store_url", Kind::Secret),
    Field("max_concurrent_calls", U32),
    Field("max_message_bytes", U32),
    Field("shutdown_grace_seconds", U64),
    Field("log_format", Kind::Str),
    Field("enabled_types", Kind::StrList),
    Field("infisical", Kind::Table(INFISICAL)),
    Field("nats", Kind::Table(NATS)),
    Field("events", Kind::Table(EVENTS)),
    Field("local", Kind::Table(LOCAL)),
    Field("tls", Kind::Table(TLS)),
    Field("auth", Kind::Table(AUTH)),
    Field("network", Kind::Table(NETWORK)),
    Field("connections", Kind::OpenTables(CONNECTION)),
    Field("rotations", Kind::Tables(ROTATION)),
];

/// Every key path the file may hold, leaves only, arrays of tables without an index
/// (`connections.host`, `auth.identities.permissions.actions`).
pub(super) fn leaf_paths(fields: &[Field], prefix: &str, out: &mut Vec<String>) {
    for field in fields {
        let path = join(prefix, field.0);
        match field.1 {
            Kind::Table(inner) | Kind::Tables(inner) | Kind::OpenTables(inner) => {
                leaf_paths(inner, &path, out);
            }
            _ => out.push(path),
        }
    }
}

/// Checks `table` against `fields`: every key of the wrong type or unknown is reported by its
/// path and removed, so what is left deserializes.
pub(super) fn check(
    table: &mut toml::Table,
    fields: &[Field],
    open: bool,
    prefix: &str,
    problems: &mut Vec<ConfigProblem>,
) {
    let keys: Vec<String> = table.keys().cloned().collect();
    for name in keys {
        let path = join(prefix, &name);
        let Some(field) = fields.iter().find(|f| f.0 == name) else {
            if !open {
                let closest = closest(&name, fields.iter().map(|f| f.0));
                let hint = closest.map_or_else(String::new, |c| format!("; did you mean `{c}`?"));
                push(problems, &path, format!("unknown key{hint}"));
                table.remove(&name);
            }
            continue;
        };
        let Some(value) = table.get_mut(&name) else {
            continue;
        };
        if !check_value(value, field.1, &path, problems) {
            table.remove(&name);
        }
    }
}

/// Whether `value` may stay; nested problems are reported (and removed) inside it.
fn check_value(
    value: &mut toml::Value,
    kind: Kind,
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> bool {
    let ok = match (kind, &mut *value) {
        (Kind::Str | Kind::Secret, toml::Value::String(_)) => true,
        (Kind::Int(min, max), toml::Value::Integer(n)) => (min..=max).contains(n),
        (Kind::Bool, toml::Value::Boolean(_)) => true,
        (Kind::StrList, toml::Value::Array(items)) => items.iter().all(toml::Value::is_str),
        (Kind::Table(fields), toml::Value::Table(t)) => {
            check(t, fields, false, path, problems);
            true
        }
        (Kind::AnyTable, toml::Value::Table(_)) => true,
        (Kind::Tables(fields) | Kind::OpenTables(fields), toml::Value::Array(items))
            if items.iter().all(toml::Value::is_table) =>
        {
            let open = matches!(kind, Kind::OpenTables(_));
            for (i, item) in items.iter_mut().enumerate() {
                if let toml::Value::Table(t) = item {
                    check(t, fields, open, &format!("{path}[{i}]"), problems);
                }
            }
            true
        }
        _ => false,
    };
    if !ok {
        push(problems, path, expected(kind));
    }
    ok
}

fn expected(kind: Kind) -> String {
    match kind {
        Kind::Str => "must be a string".into(),
        Kind::Secret => "must be a string (or an env:NAME / file:PATH reference)".into(),
        Kind::Int(min, max) => format!("must be a whole number from {min} to {max}"),
        Kind::Bool => "must be true or false".into(),
        Kind::StrList => {
            "must be a list of strings (comma-separated in an environment variable)".into()
        }
        Kind::Table(_) | Kind::AnyTable => "must be a table".into(),
        Kind::Tables(_) | Kind::OpenTables(_) => "must be an array of tables ([[...]])".into(),
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn push(problems: &mut Vec<ConfigProblem>, key: &str, reason: String) {
    problems.push(ConfigProblem {
        key: key.to_owned(),
        reason,
    });
}

/// A serde message without the value it may quote: `invalid type: string "x", expected u32`
/// becomes `has the wrong type: expected u32`. Field names (`missing field `host``) are kept.
pub(crate) fn describe_serde_error(message: &str) -> String {
    let expected = message
        .split_once(", expected ")
        .map(|(_, e)| e.lines().next().unwrap_or(e).trim().to_owned());
    if message.starts_with("invalid type") || message.starts_with("invalid value") {
        match expected {
            Some(e) => format!("has the wrong type or value: expected {e}"),
            None => "has the wrong type or value".into(),
        }
    } else if message.starts_with("unknown variant") {
        match expected {
            Some(e) => format!("is not one of the accepted values: {e}"),
            None => "is not one of the accepted values".into(),
        }
    } else if message.starts_with("missing field") || message.starts_with("unknown field") {
        message.lines().next().unwrap_or(message).to_owned()
    } else {
        "does not have the expected shape".into()
    }
}

/// The closest of `candidates` to `name` by edit distance, when it is plausibly a typo of it
/// (at most a third of the name's length apart, and at least 3 edits allowed).
pub(super) fn closest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    let allowed = (name.chars().count() / 3).max(3);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= allowed)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, case-insensitive.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_ascii_lowercase().chars().collect();
    let b: Vec<char> = b.to_ascii_lowercase().chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut current = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        previous = current;
    }
    previous[b.len()]
}

// === Lines ===

/// The line (1-based) where each key path of the file is written: `listen`, `nats.stream.name`,
/// `connections[0]` (its `[[connections]]` header), `connections[0].host`.
#[derive(Default)]
pub(super) struct Lines(HashMap<String, usize>);

impl Lines {
    /// The lines of `text`; empty when it does not parse (that problem is reported elsewhere).
    pub(super) fn of(text: &str) -> Self {
        let mut lines = Self::default();
        if let Ok(table) = toml::de::DeTable::parse(text) {
            // Newline offsets once: counting them from the start for every key was quadratic
            // (a minute for a file with 10,000 rotations).
            let newlines = NewLines::of(text);
            lines.table(&newlines, table.get_ref(), "");
        }
        lines
    }

    /// The line of `key`, or of the nearest enclosing key written in the file.
    pub(super) fn find(&self, key: &str) -> Option<usize> {
        let mut key = key;
        loop {
            if let Some(line) = self.0.get(key) {
                return Some(*line);
            }
            let cut = key.rfind(['.', '['])?;
            key = &key[..cut];
        }
    }

    fn table(&mut self, text: &NewLines, table: &toml::de::DeTable<'_>, prefix: &str) {
        for (key, value) in table {
            let path = join(prefix, key.get_ref());
            self.0.insert(path.clone(), text.line_of(key.span().start));
            self.value(text, value, &path);
        }
    }

    fn value(&mut self, text: &NewLines, value: &toml::Spanned<toml::de::DeValue<'_>>, path: &str) {
        match value.get_ref() {
            toml::de::DeValue::Table(t) => self.table(text, t, path),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    self.0
                        .insert(item_path.clone(), text.line_of(item.span().start));
                    self.value(text, item, &item_path);
                }
            }
            _ => {}
        }
    }
}

/// The byte offsets of a text's newlines, for line numbers in logarithmic time.
struct NewLines(Vec<usize>);

impl NewLines {
    fn of(text: &str) -> Self {
        Self(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i)
                .collect(),
        )
    }

    /// The 1-based line of a byte offset (as [`line_of`]).
    fn line_of(&self, offset: usize) -> usize {
        self.0.partition_point(|&newline| newline < offset) + 1
    }
}

/// The 1-based line of a byte offset.
pub(super) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |before| before.bytes().filter(|b| *b == b'\n').count())
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_lines_number_like_line_of() {
        let text = "a = 1\n\n[b]\nc = 2\n";
        let lines = NewLines::of(text);
        for offset in 0..=text.len() {
            assert_eq!(lines.line_of(offset), line_of(text, offset), "{offset}");
        }
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("listen", "listen"), 0);
        assert_eq!(edit_distance("lisen", "listen"), 1);
        assert_eq!(
            edit_distance("ROTATOR_MAX_MESAGE_BYTES", "ROTATOR_MAX_MESSAGE_BYTES"),
            1
        );
        assert_eq!(closest("listn", ROOT.iter().map(|f| f.0)), Some("listen"));
        assert_eq!(closest("zzzzzzzzzz", ROOT.iter().map(|f| f.0)), None);
    }

    #[test]
    fn serde_messages_lose_their_values() {
        let shown = describe_serde_error("invalid type: string \"hunter2\", expected u32");
        assert_eq!(shown, "has the wrong type or value: expected u32");
        let shown = describe_serde_error("unknown variant `hunter2`, expected `a` or `b`");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            describe_serde_error("missing field `host`"),
            "missing field `host`"
        );
    }

    #[test]
    fn lines_are_found_for_nested_and_array_keys() {
        let text = "listen = \"x\"\n\n[nats.stream]\nname = \"s\"\n\n[[connections]]\nname = \"a\"\nhost = 1\n";
        let lines = Lines::of(text);
        assert_eq!(lines.find("listen"), Some(1));
        assert_eq!(lines.find("nats.stream.name"), Some(4));
        assert_eq!(lines.find("connections[0].host"), Some(8));
        assert_eq!(lines.find("connections[0].port"), Some(6));
    }
}
