//! Password requirements and the password generator (`spec/rotation-types.md` §1.2 and §1.3).
//!
//! [`PasswordPolicy::for_type`] validates a rotation's `passwordRequirements` (or takes the
//! type's default) into a policy that cannot be invalid; [`PasswordPolicy::generate`] draws a
//! password from it with the thread-local CSPRNG.
//!
//! The generator follows upstream exactly: the required characters of each class first, then the
//! rest from the union of only the classes whose required count is above zero, then a
//! Fisher–Yates shuffle. Two deliberate differences, both about the symbol alphabet: it may hold
//! ASCII punctuation only, and duplicate symbols are dropped so that every symbol is equally
//! likely. Each type may also forbid symbols its target cannot take safely.

use std::borrow::Cow;

use rand::{CryptoRng, Rng};

use crate::proto::{PasswordRequirements, RotationType};
use crate::secret::SecretString;

/// The symbols used when `allowedSymbols` is missing or empty.
pub const DEFAULT_SYMBOLS: &str = "-_.~!*";
/// The default password length.
pub const DEFAULT_LENGTH: usize = 48;
/// Oracle's default password length.
pub const ORACLE_DEFAULT_LENGTH: usize = 30;
/// The longest password a requirement may ask for.
pub const MAX_LENGTH: usize = 250;

const LOWERCASE: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPERCASE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGITS: &[u8] = b"0123456789";

/// Why a `passwordRequirements` object was rejected. The messages are upstream's where the spec
/// gives one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// `length` is 0.
    #[error("Password length must be a positive number")]
    LengthNotPositive,
    /// `length` is above [`MAX_LENGTH`].
    #[error("Password length must be less than 250")]
    LengthTooLarge,
    /// Every required count is 0.
    #[error("At least one character type must be required")]
    NoClassRequired,
    /// The required counts add up to more than `length`.
    #[error("Sum of required characters cannot exceed the total length")]
    RequiredExceedsLength,
    /// `allowedSymbols` holds something other than ASCII punctuation (a letter, a digit, a space,
    /// a control or non-ASCII character).
    #[error("Invalid symbols: allowedSymbols may hold ASCII punctuation only")]
    InvalidSymbols,
    /// `allowedSymbols` holds symbols this type's target cannot take safely.
    #[error("Invalid symbols: {slug} passwords must not contain {symbols}")]
    SymbolsNotAllowed {
        /// The rotation type's slug.
        slug: &'static str,
        /// The offending symbols, in the order given.
        symbols: String,
    },
}

/// A validated password policy: a length, a minimum count per character class and a symbol
/// alphabet.
///
/// Every registered rotation keeps one, so it is kept small: counts fit in `u16` (the length
/// is at most [`MAX_LENGTH`], and no count exceeds it), and the default alphabet is not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordPolicy {
    /// Total number of characters.
    length: u16,
    /// Minimum counts, in class order: lowercase, uppercase, digits, symbols.
    required: [u16; 4],
    /// The symbol class: distinct ASCII punctuation, never `"`.
    symbols: Cow<'static, [u8]>,
}

// === impl PasswordPolicy ===

impl PasswordPolicy {
    /// The policy a type uses when no `passwordRequirements` is given: 48 characters (Oracle: 30)
    /// with at least one lowercase, one uppercase and one digit, and no symbols.
    pub fn default_for(rotation_type: RotationType) -> Self {
        let length = if rotation_type == RotationType::OracledbCredentials {
            ORACLE_DEFAULT_LENGTH
        } else {
            DEFAULT_LENGTH
        };
        Self {
            length: narrow(length),
            required: [1, 1, 1, 0],
            symbols: Cow::Borrowed(DEFAULT_SYMBOLS.as_bytes()),
        }
    }

    /// Validates `requirements` for `rotation_type`. `None` gives [`PasswordPolicy::default_for`];
    /// a given object replaces the default entirely.
    ///
    /// # Errors
    ///
    /// The first rule broken, checked in this order: length, symbols, required counts, the type's
    /// forbidden symbols.
    ///
    /// # Examples
    ///
    /// ```
    /// use rotator::drivers::password::PasswordPolicy;
    /// use rotator::proto::{PasswordRequirements, RequiredCharacters, RotationType};
    ///
    /// let requirements = PasswordRequirements {
    ///     length: 32,
    ///     required: Some(RequiredCharacters { lowercase: 2, uppercase: 2, digits: 2, symbols: 2 }),
    ///     allowed_symbols: Some("-_".into()),
    /// };
    /// let policy = PasswordPolicy::for_type(RotationType::PostgresCredentials, Some(&requirements))?;
    /// assert_eq!(policy.generate().expose().len(), 32);
    /// # Ok::<(), rotator::drivers::password::PasswordError>(())
    /// ```
    pub fn for_type(
        rotation_type: RotationType,
        requirements: Option<&PasswordRequirements>,
    ) -> Result<Self, PasswordError> {
        let Some(req) = requirements else {
            return Ok(Self::default_for(rotation_type));
        };
        let length = usize::try_from(req.length).map_err(|_| PasswordError::LengthTooLarge)?;
        if length == 0 {
            return Err(PasswordError::LengthNotPositive);
        }
        if length > MAX_LENGTH {
            return Err(PasswordError::LengthTooLarge);
        }
        let symbols = symbol_alphabet(req.allowed_symbols.as_deref())?;
        let counts = req.required.unwrap_or_default();
        let required = [
            counts.lowercase,
            counts.uppercase,
            counts.digits,
            counts.symbols,
        ]
        .map(|c| usize::try_from(c).unwrap_or(usize::MAX));
        if required.iter().all(|&c| c == 0) {
            return Err(PasswordError::NoClassRequired);
        }
        let sum = required
            .iter()
            .try_fold(0usize, |acc, &c| acc.checked_add(c));
        if sum.is_none_or(|s| s > length) {
            return Err(PasswordError::RequiredExceedsLength);
        }
        let forbidden = forbidden_symbols(rotation_type);
        let offending: String = symbols
            .iter()
            .filter(|s| forbidden.as_bytes().contains(s))
            .map(|&s| char::from(s))
            .collect();
        if !offending.is_empty() {
            return Err(PasswordError::SymbolsNotAllowed {
                slug: rotation_type.slug().unwrap_or("unspecified"),
                symbols: offending,
            });
        }
        Ok(Self {
            length: narrow(length),
            // Each count is at most `length` (their sum is), so none is cut.
            required: required.map(narrow),
            symbols,
        })
    }

    /// The password length.
    pub fn length(&self) -> usize {
        usize::from(self.length)
    }

    /// The symbol alphabet (used only when symbols are required).
    pub fn symbols(&self) -> &str {
        // Only ASCII bytes are ever stored.
        std::str::from_utf8(&self.symbols).unwrap_or_default()
    }

    /// Generates a password with the thread-local CSPRNG (ChaCha, seeded from the OS).
    pub fn generate(&self) -> SecretString {
        self.generate_with(&mut rand::rng())
    }

    /// Generates a password with `rng`; tests pass a seeded generator.
    pub fn generate_with<R: CryptoRng + ?Sized>(&self, rng: &mut R) -> SecretString {
        let classes: [&[u8]; 4] = [LOWERCASE, UPPERCASE, DIGITS, &self.symbols];
        let length = self.length();
        let mut chars = Vec::with_capacity(length);
        for (class, &count) in classes.iter().zip(&self.required) {
            chars.extend((0..count).map(|_| pick(rng, class)));
        }
        let fill: Vec<u8> = classes
            .iter()
            .zip(&self.required)
            .filter(|&(_, &count)| count > 0)
            .flat_map(|(class, _)| class.iter().copied())
            .collect();
        while chars.len() < length {
            chars.push(pick(rng, &fill));
        }
        // Fisher–Yates.
        for i in (1..chars.len()).rev() {
            let j = rng.random_range(0..=i);
            chars.swap(i, j);
        }
        SecretString::new(chars.iter().map(|&b| char::from(b)).collect::<String>())
    }
}

/// Symbols a type's target cannot take safely, whatever the quoting.
///
/// The PostgreSQL, MySQL and Redis drivers take every ASCII punctuation character: PostgreSQL
/// receives a SCRAM verifier, MySQL a literal escaped for the session's `sql_mode`, and Redis a
/// separate protocol argument.
pub fn forbidden_symbols(rotation_type: RotationType) -> &'static str {
    match rotation_type {
        // The password sits inside double quotes in `IDENTIFIED BY "<p>"`.
        RotationType::OracledbCredentials => "\"",
        // rpcclient's command line (spec §12).
        RotationType::WindowsLocalAccount => ";|&`$()",
        _ => "",
    }
}

/// The symbol alphabet from `allowedSymbols`: `"` removed (as upstream), duplicates dropped,
/// the default when nothing is left.
fn symbol_alphabet(allowed: Option<&str>) -> Result<Cow<'static, [u8]>, PasswordError> {
    let mut symbols = Vec::new();
    for c in allowed.unwrap_or_default().chars().filter(|&c| c != '"') {
        if !c.is_ascii_punctuation() {
            return Err(PasswordError::InvalidSymbols);
        }
        // ASCII, so the cast is exact.
        let b = c as u8;
        if !symbols.contains(&b) {
            symbols.push(b);
        }
    }
    if symbols.is_empty() {
        return Ok(Cow::Borrowed(DEFAULT_SYMBOLS.as_bytes()));
    }
    Ok(Cow::Owned(symbols))
}

/// `value` as a count of the policy; every count is checked against [`MAX_LENGTH`] first.
fn narrow(value: usize) -> u16 {
    u16::try_from(value.min(MAX_LENGTH)).unwrap_or(u16::MAX)
}

/// One uniformly drawn byte of `class` (never empty: every class has at least one member).
fn pick<R: CryptoRng + ?Sized>(rng: &mut R, class: &[u8]) -> u8 {
    class[rng.random_range(0..class.len())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::RequiredCharacters;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn req(length: u32, counts: [u32; 4], symbols: Option<&str>) -> PasswordRequirements {
        PasswordRequirements {
            length,
            required: Some(RequiredCharacters {
                lowercase: counts[0],
                uppercase: counts[1],
                digits: counts[2],
                symbols: counts[3],
            }),
            allowed_symbols: symbols.map(str::to_owned),
        }
    }

    fn policy(r: &PasswordRequirements) -> Result<PasswordPolicy, PasswordError> {
        PasswordPolicy::for_type(RotationType::PostgresCredentials, Some(r))
    }

    fn class_counts(password: &str, symbols: &str) -> [usize; 4] {
        let mut counts = [0; 4];
        for c in password.chars() {
            let i = if c.is_ascii_lowercase() {
                0
            } else if c.is_ascii_uppercase() {
                1
            } else if c.is_ascii_digit() {
                2
            } else {
                assert!(symbols.contains(c), "{c:?} is outside every class");
                3
            };
            counts[i] += 1;
        }
        counts
    }

    #[test]
    fn default_is_48_alphanumerics_with_every_class_and_no_symbol() {
        let p = PasswordPolicy::for_type(RotationType::PostgresCredentials, None)
            .expect("default is valid");
        for _ in 0..200 {
            let pw = p.generate();
            assert_eq!(pw.expose().len(), 48);
            let c = class_counts(pw.expose(), DEFAULT_SYMBOLS);
            assert!(c[0] >= 1 && c[1] >= 1 && c[2] >= 1, "{c:?}");
            assert_eq!(c[3], 0, "the default never draws a symbol");
        }
    }

    #[test]
    fn oracle_default_is_30_but_given_requirements_replace_it_entirely() {
        let p = PasswordPolicy::for_type(RotationType::OracledbCredentials, None).expect("valid");
        assert_eq!(p.generate().expose().len(), 30);
        let p = PasswordPolicy::for_type(
            RotationType::OracledbCredentials,
            Some(&req(48, [1, 0, 0, 0], None)),
        )
        .expect("valid");
        assert_eq!(p.length(), 48);
    }

    #[test]
    fn rules_give_the_spec_messages() {
        let cases = [
            (
                req(0, [1, 0, 0, 0], None),
                "Password length must be a positive number",
            ),
            (
                req(251, [1, 0, 0, 0], None),
                "Password length must be less than 250",
            ),
            (
                req(8, [0, 0, 0, 0], None),
                "At least one character type must be required",
            ),
            (
                req(4, [2, 2, 1, 0], None),
                "Sum of required characters cannot exceed the total length",
            ),
            (
                req(4, [u32::MAX, u32::MAX, 1, 0], None),
                "Sum of required characters cannot exceed the total length",
            ),
        ];
        for (r, message) in cases {
            let err = policy(&r).expect_err(message);
            assert_eq!(err.to_string(), message);
        }
        let missing_required = PasswordRequirements {
            length: 8,
            required: None,
            allowed_symbols: None,
        };
        assert_eq!(
            policy(&missing_required),
            Err(PasswordError::NoClassRequired)
        );
        assert!(policy(&req(250, [1, 0, 0, 0], None)).is_ok());
    }

    #[test]
    fn symbols_must_be_ascii_punctuation() {
        for bad in ["ab", "-1", "- ", "-\n", "-é", "\0"] {
            assert_eq!(
                policy(&req(8, [1, 0, 0, 1], Some(bad))),
                Err(PasswordError::InvalidSymbols),
                "{bad:?}"
            );
        }
        let all = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";
        let p = policy(&req(8, [1, 0, 0, 1], Some(all))).expect("all punctuation is fine");
        assert!(!p.symbols().contains('"'), "double quotes are stripped");
        assert_eq!(p.symbols().len(), 31);
    }

    #[test]
    fn empty_or_only_double_quotes_means_the_default_alphabet() {
        for given in [None, Some(""), Some("\"\"")] {
            let p = policy(&req(8, [1, 0, 0, 1], given)).expect("valid");
            assert_eq!(p.symbols(), DEFAULT_SYMBOLS);
        }
        let p = policy(&req(8, [1, 0, 0, 1], Some("--__"))).expect("valid");
        assert_eq!(p.symbols(), "-_", "duplicates dropped");
    }

    #[test]
    fn per_type_forbidden_symbols_are_rejected_by_name() {
        let r = req(16, [1, 0, 0, 1], Some("-;|a"));
        assert_eq!(
            PasswordPolicy::for_type(RotationType::WindowsLocalAccount, Some(&r)),
            Err(PasswordError::InvalidSymbols)
        );
        let r = req(16, [1, 0, 0, 1], Some("-;|"));
        let err = PasswordPolicy::for_type(RotationType::WindowsLocalAccount, Some(&r))
            .expect_err("windows forbids ; and |");
        assert_eq!(
            err,
            PasswordError::SymbolsNotAllowed {
                slug: "windows-local-account",
                symbols: ";|".into()
            }
        );
        for t in [
            RotationType::PostgresCredentials,
            RotationType::MysqlCredentials,
            RotationType::RedisCredentials,
        ] {
            let all = req(16, [1, 0, 0, 1], Some("!#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"));
            assert!(PasswordPolicy::for_type(t, Some(&all)).is_ok(), "{t:?}");
        }
    }

    /// Every combination of length 1..=9 and counts 0..=3: validation agrees with the rules, and
    /// every generated password has the length, the minimum per class, and only the classes
    /// that were asked for.
    #[test]
    fn exhaustive_small_requirements() {
        let mut rng = StdRng::seed_from_u64(7);
        let symbols = "#'\\";
        for length in 1..=9u32 {
            for counts in (0..4u32.pow(4)).map(|n| [n % 4, n / 4 % 4, n / 16 % 4, n / 64]) {
                let r = req(length, counts, Some(symbols));
                let sum: u32 = counts.iter().sum();
                let result = policy(&r);
                if sum == 0 {
                    assert_eq!(result, Err(PasswordError::NoClassRequired));
                    continue;
                }
                if sum > length {
                    assert_eq!(result, Err(PasswordError::RequiredExceedsLength));
                    continue;
                }
                let p = result.expect("valid requirements");
                for _ in 0..20 {
                    let pw = p.generate_with(&mut rng);
                    assert_eq!(pw.expose().len(), length as usize);
                    let got = class_counts(pw.expose(), symbols);
                    for class in 0..4 {
                        assert!(got[class] >= counts[class] as usize, "{counts:?} {got:?}");
                        if counts[class] == 0 {
                            assert_eq!(got[class], 0, "class {class} was not asked for");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_shuffle_moves_required_characters_off_their_draw_positions() {
        // Drawn in class order the password would always be "<lower><digit>".
        let p = policy(&req(2, [1, 0, 1, 0], None)).expect("valid");
        let mut digit_first = false;
        let mut lower_first = false;
        for _ in 0..200 {
            let pw = p.generate();
            let first = pw.expose().as_bytes()[0];
            digit_first |= first.is_ascii_digit();
            lower_first |= first.is_ascii_lowercase();
        }
        assert!(digit_first && lower_first);
    }

    #[test]
    fn every_symbol_of_the_alphabet_can_appear() {
        let p = policy(&req(64, [0, 0, 0, 64], Some("-_.~!*"))).expect("valid");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            seen.extend(p.generate().expose().chars());
        }
        assert_eq!(seen.len(), 6);
    }
}
