//! Quoting identifiers and string literals for the SQL dialects the drivers speak.
//!
//! Neither `ALTER ROLE … PASSWORD` (PostgreSQL) nor `ALTER USER … IDENTIFIED BY` (MySQL,
//! MariaDB) takes bind parameters, so the values go into the SQL text and must be quoted for
//! the exact dialect and session settings.

/// Why a value cannot be quoted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The value is empty.
    #[error("the value is empty")]
    Empty,
    /// The value holds a NUL character, which neither server accepts in a statement.
    #[error("the value contains a NUL character")]
    Nul,
    /// PostgreSQL would silently truncate the identifier and act on another name.
    #[error("the identifier is longer than {max} bytes")]
    TooLong {
        /// The maximum length in bytes.
        max: usize,
    },
}

/// PostgreSQL's identifier limit (`NAMEDATALEN - 1`); longer names are truncated by the server.
pub const PG_MAX_IDENTIFIER_BYTES: usize = 63;

/// A PostgreSQL identifier in double quotes, each `"` doubled.
///
/// # Errors
///
/// Empty, NUL, or longer than [`PG_MAX_IDENTIFIER_BYTES`].
///
/// # Examples
///
/// ```
/// use rotator::drivers::quote::pg_identifier;
/// assert_eq!(pg_identifier("app\"x").unwrap(), "\"app\"\"x\"");
/// ```
pub fn pg_identifier(name: &str) -> Result<String, QuoteError> {
    check(name)?;
    if name.len() > PG_MAX_IDENTIFIER_BYTES {
        return Err(QuoteError::TooLong {
            max: PG_MAX_IDENTIFIER_BYTES,
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// A PostgreSQL string literal that reads back as `value` whatever
/// `standard_conforming_strings` is: `'` doubled, and when a backslash is present, the
/// escape-string form `E'…'` with each `\` doubled (as PostgreSQL's own `quote_literal`).
///
/// # Errors
///
/// NUL.
pub fn pg_literal(value: &str) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError::Nul);
    }
    let body = value.replace('\'', "''");
    Ok(if value.contains('\\') {
        format!("E'{}'", body.replace('\\', "\\\\"))
    } else {
        format!("'{body}'")
    })
}

/// A MySQL/MariaDB string literal that reads back as `value` in a session whose `sql_mode`
/// has (`backslash_escapes == false`) or lacks (`true`) `NO_BACKSLASH_ESCAPES`.
///
/// `'` is doubled in both modes; with backslash escapes on, `\` is doubled and the characters
/// the server's own `mysql_real_escape_string` escapes (newline, return, Ctrl-Z) are escaped.
/// The connection must use a charset where `\` and `'` never occur inside a multibyte
/// character (utf8mb4, which sqlx sets).
///
/// # Errors
///
/// NUL.
pub fn mysql_literal(value: &str, backslash_escapes: bool) -> Result<String, QuoteError> {
    if value.contains('\0') {
        return Err(QuoteError::Nul);
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' if backslash_escapes => out.push_str("\\\\"),
            '\n' if backslash_escapes => out.push_str("\\n"),
            '\r' if backslash_escapes => out.push_str("\\r"),
            '\u{1a}' if backslash_escapes => out.push_str("\\Z"),
            c => out.push(c),
        }
    }
    out.push('\'');
    Ok(out)
}

/// A MySQL account name, `'<user>'@'<host>'`, both parts as literals.
///
/// # Errors
///
/// An empty user, or NUL in either part.
pub fn mysql_account(
    user: &str,
    host: &str,
    backslash_escapes: bool,
) -> Result<String, QuoteError> {
    check(user)?;
    Ok(format!(
        "{}@{}",
        mysql_literal(user, backslash_escapes)?,
        mysql_literal(host, backslash_escapes)?
    ))
}

fn check(name: &str) -> Result<(), QuoteError> {
    if name.is_empty() {
        return Err(QuoteError::Empty);
    }
    if name.contains('\0') {
        return Err(QuoteError::Nul);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_identifiers_double_their_quotes() {
        assert_eq!(pg_identifier("app").as_deref(), Ok("\"app\""));
        assert_eq!(pg_identifier("a\"b").as_deref(), Ok("\"a\"\"b\""));
        assert_eq!(
            pg_identifier("Mixed Case;--").as_deref(),
            Ok("\"Mixed Case;--\"")
        );
        assert_eq!(pg_identifier(""), Err(QuoteError::Empty));
        assert_eq!(pg_identifier("a\0"), Err(QuoteError::Nul));
        assert!(pg_identifier(&"x".repeat(63)).is_ok());
        assert_eq!(
            pg_identifier(&"x".repeat(64)),
            Err(QuoteError::TooLong { max: 63 })
        );
    }

    #[test]
    fn pg_literals_use_the_escape_form_only_for_backslashes() {
        assert_eq!(pg_literal("abc").as_deref(), Ok("'abc'"));
        assert_eq!(pg_literal("it's").as_deref(), Ok("'it''s'"));
        assert_eq!(pg_literal("a\\'b").as_deref(), Ok("E'a\\\\''b'"));
        assert_eq!(pg_literal("a\0"), Err(QuoteError::Nul));
    }

    #[test]
    fn mysql_literals_follow_the_sql_mode() {
        assert_eq!(mysql_literal("a'b\\c", true).as_deref(), Ok("'a''b\\\\c'"));
        assert_eq!(mysql_literal("a'b\\c", false).as_deref(), Ok("'a''b\\c'"));
        assert_eq!(mysql_literal("l1\nl2", true).as_deref(), Ok("'l1\\nl2'"));
        assert_eq!(mysql_literal("\0", true), Err(QuoteError::Nul));
        assert_eq!(mysql_account("app", "%", true).as_deref(), Ok("'app'@'%'"));
        assert_eq!(mysql_account("", "%", true), Err(QuoteError::Empty));
    }

    /// A literal never ends early: after the opening quote, every `'` is part of a `''` pair
    /// (or, with backslash escapes, follows an escaping backslash) until the closing one.
    #[test]
    fn no_ascii_value_can_close_a_mysql_literal_early() {
        let all: String = (1u8..=127).map(char::from).collect();
        for escapes in [true, false] {
            let lit = mysql_literal(&all, escapes).expect("no NUL");
            let inner = &lit[1..lit.len() - 1];
            let mut chars = inner.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if escapes => {
                        chars.next();
                    }
                    '\'' => assert_eq!(chars.next(), Some('\''), "lone quote in {lit:?}"),
                    _ => {}
                }
            }
        }
    }
}
