//! The permission model: identities' grants (actions on rotation types and rotations, by glob
//! over id or name) and bearer token hashes. Plain data that the configuration builds and the
//! api checks; it knows nothing of either.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::proto::RotationType;

/// The SHA-256 of a bearer token. Tokens are random (see `rotator token generate`), so a fast
/// hash is enough: brute force is hopeless, and a slow hash on every call would be a DoS lever.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

/// Something a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `RotateSecrets`.
    Rotate,
    /// `GetSecretRotation` and `ListSecretRotations`: metadata, never secret values.
    Read,
    /// `GetGeneratedCredentials`: the secret values themselves.
    ReadCredentials,
}

/// Which rotation types a grant covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeScope {
    /// Every type (`"*"`).
    Any,
    /// One type.
    Only(RotationType),
}

/// A glob over a rotation id or name: `*` matches any run of characters, everything else
/// matches itself. Ids are matched in their canonical lowercase UUID form.
#[derive(Clone, PartialEq, Eq)]
pub struct Pattern(String);

/// Some actions on some types and rotations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The actions granted.
    pub actions: Vec<Action>,
    /// The types they apply to.
    pub types: Vec<TypeScope>,
    /// The rotations they apply to, by id or name.
    pub rotations: Vec<Pattern>,
}

/// Every grant of one identity. No grant, no access.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The grants; a request is allowed when any one grant allows it.
    pub grants: Vec<Grant>,
}

/// The rotation a request names, by the identifiers the request carries.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Addressed by id (canonical lowercase UUID).
    Id(&'a str),
    /// Addressed by name.
    Name(&'a str),
    /// A rotation whose id and name are both known (list results).
    Both {
        /// The id.
        id: &'a str,
        /// The name.
        name: &'a str,
    },
}

// === impl Action ===

impl Action {
    /// The name used in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rotate => "rotate",
            Self::Read => "read",
            Self::ReadCredentials => "read-credentials",
        }
    }

    /// Parses a configuration name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "rotate" => Some(Self::Rotate),
            "read" => Some(Self::Read),
            "read-credentials" => Some(Self::ReadCredentials),
            _ => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl TypeScope ===

impl TypeScope {
    /// Parses `"*"` or a rotation type (slug or proto name).
    pub fn parse(text: &str) -> Option<Self> {
        if text == "*" {
            return Some(Self::Any);
        }
        RotationType::parse(text).map(Self::Only)
    }

    fn covers(self, rotation_type: RotationType) -> bool {
        match self {
            Self::Any => true,
            Self::Only(t) => t == rotation_type,
        }
    }
}

// === impl Pattern ===

impl Pattern {
    /// The longest pattern accepted.
    pub const MAX_LEN: usize = 256;

    /// Parses a pattern: 1 to 256 printable ASCII characters without spaces.
    pub fn parse(text: &str) -> Option<Self> {
        let ok = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text.bytes().all(|b| b.is_ascii_graphic());
        ok.then(|| Self(text.to_owned()))
    }

    /// Whether `text` matches. Linear-time in practice: a single `*` backtrack point, as in the
    /// classic wildcard matcher, so a hostile name cannot make matching exponential.
    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (self.0.as_bytes(), text.as_bytes());
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if pi < p.len() && p[pi] == t[ti] {
                pi += 1;
                ti += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&b| b == b'*')
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pattern({:?})", self.0)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Grant ===

impl Grant {
    fn allows(&self, action: Action, rotation_type: RotationType, target: Target<'_>) -> bool {
        self.actions.contains(&action)
            && self.types.iter().any(|s| s.covers(rotation_type))
            && self.rotations.iter().any(|p| match target {
                Target::Id(id) => p.matches(id),
                Target::Name(name) => p.matches(name),
                Target::Both { id, name } => p.matches(id) || p.matches(name),
            })
    }
}

// === impl Policy ===

impl Policy {
    /// Whether any grant allows `action` on the target rotation of `rotation_type`.
    pub fn allows(&self, action: Action, rotation_type: RotationType, target: Target<'_>) -> bool {
        self.grants
            .iter()
            .any(|g| g.allows(action, rotation_type, target))
    }

    /// Whether any grant could let the caller read something in a list of `rotation_type`
    /// (`Unspecified`: of any type).
    pub fn may_list(&self, rotation_type: RotationType) -> bool {
        self.grants.iter().any(|g| {
            g.actions.contains(&Action::Read)
                && (rotation_type == RotationType::Unspecified
                    || g.types.iter().any(|s| s.covers(rotation_type)))
        })
    }
}

// === impl TokenHash ===

impl TokenHash {
    /// Hashes a token.
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Parses 64 hex digits (either case).
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// Lowercase hex, as configured.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Compares in constant time.
    pub fn ct_matches(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}
