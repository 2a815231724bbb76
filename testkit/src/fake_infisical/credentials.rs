//! Credential generation (`rotation-types.md` §0, §1.2-1.3): password requirements read from
//! `parameters`, `generatePassword`, and a new credential set of each type's shape.

use rand::Rng;
use rand::seq::SliceRandom;
use serde_json::{Value, json};
use uuid::Uuid;

use super::catalogue::is_sql_type;

/// Password requirements (`rotation-types.md` §1.2), parsed leniently from `parameters`.
#[derive(Clone, Debug)]
pub(super) struct PasswordRules {
    pub(super) length: usize,
    pub(super) lowercase: usize,
    pub(super) uppercase: usize,
    pub(super) digits: usize,
    pub(super) symbols: usize,
    pub(super) allowed_symbols: String,
}

impl PasswordRules {
    pub(super) fn default_with_length(length: usize) -> Self {
        PasswordRules {
            length,
            lowercase: 1,
            uppercase: 1,
            digits: 1,
            symbols: 0,
            allowed_symbols: "-_.~!*".into(),
        }
    }

    pub(super) fn from_parameters(params: &Value, default_length: usize) -> Self {
        let Some(req) = params.get("passwordRequirements").filter(|v| v.is_object()) else {
            return Self::default_with_length(default_length);
        };
        let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0) as usize;
        let required = req.get("required");
        PasswordRules {
            length: req
                .get("length")
                .and_then(Value::as_u64)
                .map(|l| l as usize)
                .unwrap_or(default_length),
            lowercase: n(required.and_then(|r| r.get("lowercase"))),
            uppercase: n(required.and_then(|r| r.get("uppercase"))),
            digits: n(required.and_then(|r| r.get("digits"))),
            symbols: n(required.and_then(|r| r.get("symbols"))),
            allowed_symbols: req
                .get("allowedSymbols")
                .and_then(Value::as_str)
                .unwrap_or("-_.~!*")
                .to_string(),
        }
    }
}

/// `generatePassword` (`rotation-types.md` §1.3): required counts per class, the rest from the union
/// of the classes with a non-zero count, then a Fisher–Yates shuffle.
pub(super) fn generate_password(rules: &PasswordRules) -> String {
    let mut symbols: Vec<char> = rules
        .allowed_symbols
        .chars()
        .filter(|c| *c != '"')
        .collect();
    if symbols.is_empty() {
        symbols = "-_.~!*".chars().collect();
    }
    let lower: Vec<char> = ('a'..='z').collect();
    let upper: Vec<char> = ('A'..='Z').collect();
    let digits: Vec<char> = ('0'..='9').collect();
    let classes: [(&[char], usize); 4] = [
        (&lower, rules.lowercase),
        (&upper, rules.uppercase),
        (&digits, rules.digits),
        (&symbols, rules.symbols),
    ];
    let mut rng = rand::rng();
    let mut out: Vec<char> = Vec::with_capacity(rules.length);
    let mut union: Vec<char> = Vec::new();
    for (alphabet, count) in classes {
        for _ in 0..count {
            out.push(alphabet[rng.random_range(0..alphabet.len())]);
        }
        if count > 0 {
            union.extend_from_slice(alphabet);
        }
    }
    if union.is_empty() {
        union = lower.iter().chain(&upper).chain(&digits).copied().collect();
    }
    let required: usize = classes.iter().map(|(_, c)| c).sum();
    for _ in 0..rules.length.saturating_sub(required) {
        out.push(union[rng.random_range(0..union.len())]);
    }
    out.shuffle(&mut rng);
    out.into_iter().collect()
}

pub(super) fn random_from(alphabet: &str, len: usize) -> String {
    let chars: Vec<char> = alphabet.chars().collect();
    let mut rng = rand::rng();
    (0..len)
        .map(|_| chars[rng.random_range(0..chars.len())])
        .collect()
}

pub(super) const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

pub(super) fn param_str(params: &Value, key: &str) -> String {
    params
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A new generated-credential set of the type's shape (`rotation-types.md` §0) for `slot`.
pub(super) fn generate_credential(type_slug: &str, params: &Value, slot: usize) -> Value {
    match type_slug {
        // SQL and MongoDB alternate between the two users: slot 0 = username1, slot 1 = username2.
        t if is_sql_type(t) || t == "mongodb-credentials" => {
            let user = param_str(params, if slot == 0 { "username1" } else { "username2" });
            let rules = if t == "mongodb-credentials" {
                PasswordRules::default_with_length(48)
            } else {
                PasswordRules::from_parameters(
                    params,
                    if t == "oracledb-credentials" { 30 } else { 48 },
                )
            };
            json!({ "username": user, "password": generate_password(&rules) })
        }
        "redis-credentials" => {
            let user_rules = PasswordRules {
                length: 32,
                lowercase: 5,
                uppercase: 5,
                digits: 5,
                symbols: 0,
                allowed_symbols: String::new(),
            };
            json!({
                "username": generate_password(&user_rules),
                "password": generate_password(&PasswordRules::from_parameters(params, 48)),
            })
        }
        "auth0-client-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": generate_password(&PasswordRules::default_with_length(48)),
        }),
        "okta-client-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": random_from(&format!("{ALNUM}-_"), 64),
            "secretId": format!("ocs{}", random_from(ALNUM, 17)),
        }),
        "azure-client-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": format!("{}8Q~{}", random_from(ALNUM, 3), random_from(&format!("{ALNUM}_.~-"), 34)),
            "keyId": Uuid::new_v4().to_string(),
        }),
        "aws-iam-user-secret" => json!({
            "accessKeyId": format!("AKIA{}", random_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
            "secretAccessKey": random_from(&format!("{ALNUM}/+"), 40),
        }),
        "databricks-service-principal-secret" => json!({
            "clientId": param_str(params, "clientId"),
            "clientSecret": format!("dose{}", random_from("0123456789abcdef", 32)),
            "secretId": random_from("0123456789abcdef", 32),
        }),
        "ldap-password" => json!({
            "dn": param_str(params, "dn"),
            "password": generate_password(&PasswordRules::from_parameters(params, 48)),
        }),
        "unix-linux-local-account" | "windows-local-account" => json!({
            "username": param_str(params, "username"),
            "password": generate_password(&PasswordRules::from_parameters(params, 48)),
        }),
        _ => json!({}),
    }
}
