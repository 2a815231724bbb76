//! Scrubbing secrets out of text a peer sent back (server error messages), before the text goes
//! into a [`DriverError`](super::DriverError).

/// What replaces a secret: 19 asterisks, as upstream.
pub const MASK: &str = "*******************";

/// The longest detail kept from a peer's message, in bytes.
const MAX_DETAIL: usize = 512;

/// A shorter echo than this is not treated as a partial leak (it would match by chance).
const PARTIAL_WINDOW: usize = 8;

/// The secrets in play during one driver operation, and the scrubbing of peer text.
#[derive(Default)]
pub struct Redactor<'a> {
    secrets: Vec<&'a str>,
}

// === impl Redactor ===

impl<'a> Redactor<'a> {
    /// A redactor for `secrets` (empty ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            secrets: secrets.into_iter().filter(|s| !s.is_empty()).collect(),
        }
    }

    /// A copy that also scrubs `secret`, for a value derived later in the operation.
    pub fn also<'b>(&self, secret: &'b str) -> Redactor<'b>
    where
        'a: 'b,
    {
        let mut secrets: Vec<&'b str> = self.secrets.clone();
        if !secret.is_empty() {
            secrets.push(secret);
        }
        Redactor { secrets }
    }

    /// `text` with every secret replaced by [`MASK`], bounded in length.
    ///
    /// A server that quotes a statement may cut it anywhere (MariaDB quotes 80 characters from
    /// the error position), so a secret can appear truncated. When any run of 8 characters of a
    /// secret survives the replacement, the whole text is withheld.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Longest first, so a secret containing another is replaced whole.
        let mut secrets = self.secrets.clone();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        for s in &secrets {
            out = out.replace(s, MASK);
        }
        let leaks = secrets.iter().any(|s| {
            s.len() >= PARTIAL_WINDOW
                && s.as_bytes()
                    .windows(PARTIAL_WINDOW)
                    .any(|w| contains_bytes(out.as_bytes(), w))
        });
        if leaks {
            return "[message withheld: it quoted part of a secret]".to_owned();
        }
        truncate(out)
    }
}

impl std::fmt::Debug for Redactor<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_occurrence_with_19_asterisks() {
        let r = Redactor::new(["s3cret-pw"]);
        assert_eq!(
            r.scrub("bad 's3cret-pw' and s3cret-pw"),
            format!("bad '{MASK}' and {MASK}")
        );
        assert_eq!(MASK.len(), 19);
    }

    #[test]
    fn withholds_text_quoting_part_of_a_secret() {
        let pw = "Abcdefghijklmnopqrstuvwxyz0123456789";
        let r = Redactor::new([pw]);
        let echoed = "near 'IDENTIFIED BY 'Abcdefghijklmnop' at line 1";
        let out = r.scrub(echoed);
        assert!(!out.contains("Abcdefgh"), "{out}");
        assert!(out.contains("withheld"));
    }

    #[test]
    fn keeps_unrelated_text_and_bounds_its_length() {
        let r = Redactor::new(["", "xyzxyzxyz"]);
        assert_eq!(
            r.scrub("role \"app\" does not exist"),
            "role \"app\" does not exist"
        );
        let long = "é".repeat(600);
        assert!(r.scrub(&long).len() <= MAX_DETAIL + '…'.len_utf8());
    }
}
