//! Mapped secrets rendered in a sink's format: env, dotenv, JSON or a template.

use crate::config::sinks::Format;
use crate::secret::SecretString;

use super::SinkError;

/// `values` in `format`. The result holds secrets, so it is a [`SecretString`].
///
/// # Errors
///
/// A value that `env` cannot hold on one line (a line break).
pub fn render(
    format: &Format,
    values: &[(String, SecretString)],
) -> Result<SecretString, SinkError> {
    let mut out = String::new();
    match format {
        Format::Env => {
            for (name, value) in values {
                let value = value.expose();
                if value.contains(['\n', '\r']) {
                    return Err(SinkError(format!(
                        "the value of {name} has a line break, which format env cannot hold; \
                         use dotenv or json"
                    )));
                }
                out.push_str(&format!("{name}={value}\n"));
            }
        }
        Format::Dotenv => {
            for (name, value) in values {
                out.push_str(&format!("{name}=\"{}\"\n", dotenv_escape(value.expose())));
            }
        }
        Format::Json => {
            let object: serde_json::Map<String, serde_json::Value> = values
                .iter()
                .map(|(name, value)| (name.clone(), value.expose().into()))
                .collect();
            out = serde_json::Value::Object(object).to_string();
            out.push('\n');
        }
        Format::Template(text) => {
            let mut rest = text.as_str();
            while let Some(start) = rest.find("{{") {
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                out.push_str(&rest[..start]);
                let name = after[..end].trim();
                let value = values.iter().find(|(n, _)| n == name).ok_or_else(|| {
                    SinkError(format!(
                        "the template names {name}, which the credential does not map"
                    ))
                })?;
                out.push_str(value.1.expose());
                rest = &after[end + 2..];
            }
            out.push_str(rest);
        }
    }
    Ok(SecretString::new(out))
}

fn dotenv_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '$' => out.push_str("\\$"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Vec<(String, SecretString)> {
        vec![
            ("DB_PASSWORD".into(), SecretString::new("p\"a$s\\w")),
            ("DB_USER".into(), SecretString::new("app_b")),
        ]
    }

    #[test]
    fn each_format_renders_every_value() {
        let env = render(&Format::Env, &values()).expect("env");
        assert_eq!(env.expose(), "DB_PASSWORD=p\"a$s\\w\nDB_USER=app_b\n");
        let dotenv = render(&Format::Dotenv, &values()).expect("dotenv");
        assert_eq!(
            dotenv.expose(),
            "DB_PASSWORD=\"p\\\"a\\$s\\\\w\"\nDB_USER=\"app_b\"\n"
        );
        let json = render(&Format::Json, &values()).expect("json");
        let parsed: serde_json::Value = serde_json::from_str(json.expose()).expect("parse");
        assert_eq!(parsed["DB_PASSWORD"], "p\"a$s\\w");
        let template = render(
            &Format::Template("postgres://{{ DB_USER }}:{{DB_PASSWORD}}@db/app".into()),
            &values(),
        )
        .expect("template");
        assert_eq!(template.expose(), "postgres://app_b:p\"a$s\\w@db/app");
    }

    #[test]
    fn env_refuses_a_line_break_without_quoting_it() {
        let values = vec![("K".to_owned(), SecretString::new("line1\nsecret-tail"))];
        let error = render(&Format::Env, &values).expect_err("refused");
        assert!(!error.to_string().contains("secret-tail"));
    }
}
