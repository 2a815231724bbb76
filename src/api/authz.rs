//! Authorization: what an authenticated caller may do. A policy is a list of grants; each grant
//! gives some actions on some rotation types and some rotations (glob patterns over the rotation
//! id or name). Checks run after a request is validated and before the engine sees it, so a
//! denied call reaches no backend.

use std::fmt;

use super::auth::Caller;
use super::error::ServiceError;
use crate::context::CallContext;
pub use crate::policy::{Action, Grant, Pattern, Policy, Target, TypeScope};
use crate::proto::{RotationType, SecretRotation};

/// A refused request: who wanted what on which rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Who asked.
    pub identity: String,
    /// What for.
    pub action: Action,
    /// On which type (`Unspecified` for a list of every type).
    pub rotation_type: RotationType,
    /// Which rotation: an id, a name, or `*` for a list.
    pub rotation: String,
}

/// What a `ListSecretRotations` caller may see of the answer.
#[derive(Debug, Clone)]
pub enum ListFilter {
    /// Everything (open mode).
    All,
    /// Only rotations the caller may read.
    Readable(Caller),
}

// === impl Denial ===

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "identity {:?} lacks the {} permission for {} rotation {}",
            self.identity,
            self.action,
            self.rotation_type.slug().unwrap_or("*"),
            self.rotation
        )
    }
}

// === impl ListFilter ===

impl ListFilter {
    /// Whether the caller may see this listed rotation.
    pub fn allows(&self, rotation: &SecretRotation) -> bool {
        match self {
            Self::All => true,
            Self::Readable(caller) => caller.allows(
                Action::Read,
                rotation.r#type(),
                Target::Both {
                    id: &rotation.id,
                    name: &rotation.name,
                },
            ),
        }
    }
}

/// Checks that `caller` may do `action` on the target; a denial is logged (identity, method,
/// rotation) and returned as [`ServiceError::PermissionDenied`].
///
/// # Errors
///
/// [`ServiceError::PermissionDenied`].
pub fn authorize(
    caller: &Caller,
    method: &'static str,
    action: Action,
    rotation_type: RotationType,
    target: Target<'_>,
    ctx: &CallContext,
) -> Result<(), ServiceError> {
    if caller.allows(action, rotation_type, target) {
        return Ok(());
    }
    let rotation = match target {
        Target::Id(s) | Target::Name(s) | Target::Both { id: s, .. } => s,
    };
    Err(denied(caller, method, action, rotation_type, rotation, ctx))
}

/// Decides what a list call may return; denies outright when no grant covers the type, so the
/// backend is not called.
///
/// # Errors
///
/// [`ServiceError::PermissionDenied`].
pub fn list_filter(
    caller: &Caller,
    method: &'static str,
    rotation_type: RotationType,
    ctx: &CallContext,
) -> Result<ListFilter, ServiceError> {
    match caller {
        Caller::Open => Ok(ListFilter::All),
        Caller::Identity(identity) if identity.policy.may_list(rotation_type) => {
            Ok(ListFilter::Readable(caller.clone()))
        }
        Caller::Identity(_) => Err(denied(
            caller,
            method,
            Action::Read,
            rotation_type,
            "*",
            ctx,
        )),
    }
}

fn denied(
    caller: &Caller,
    method: &'static str,
    action: Action,
    rotation_type: RotationType,
    rotation: &str,
    ctx: &CallContext,
) -> ServiceError {
    let type_name = rotation_type.slug().unwrap_or("*");
    tracing::warn!(
        request_id = %ctx.request_id,
        identity = %caller,
        method,
        action = action.as_str(),
        rotation_type = type_name,
        rotation,
        "permission denied"
    );
    ServiceError::PermissionDenied(Box::new(Denial {
        identity: caller.to_string(),
        action,
        rotation_type,
        rotation: rotation.to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(p: &str) -> Pattern {
        Pattern::parse(p).expect("valid pattern")
    }

    #[test]
    fn globs_match_like_shell_stars() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("pg-*", "pg-app", true),
            ("pg-*", "pg-", true),
            ("pg-*", "mysql-app", false),
            ("*-prod", "pg-prod", true),
            ("*-prod", "pg-prod-2", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("**", "x", true),
        ];
        for (p, text, expected) in cases {
            assert_eq!(pattern(p).matches(text), expected, "{p} vs {text}");
        }
    }

    #[test]
    fn a_hostile_name_cannot_make_matching_blow_up() {
        // Exponential matchers take forever here; the single-backtrack one is quadratic at worst.
        let p = pattern(&"*a".repeat(100));
        assert!(!p.matches(&"a".repeat(99)));
        assert!(p.matches(&"a".repeat(100)));
    }

    #[test]
    fn patterns_refuse_spaces_control_characters_and_length() {
        assert!(Pattern::parse("").is_none());
        assert!(Pattern::parse("a b").is_none());
        assert!(Pattern::parse("a\nb").is_none());
        assert!(Pattern::parse("é").is_none());
        assert!(Pattern::parse(&"x".repeat(257)).is_none());
    }

    fn policy() -> Policy {
        Policy {
            grants: vec![
                Grant {
                    actions: vec![Action::Read, Action::Rotate],
                    types: vec![TypeScope::Only(RotationType::PostgresCredentials)],
                    rotations: vec![pattern("pg-*"), pattern("3f0c5a0e-*")],
                },
                Grant {
                    actions: vec![Action::Read],
                    types: vec![TypeScope::Any],
                    rotations: vec![pattern("public-*")],
                },
            ],
        }
    }

    #[test]
    fn grants_combine_action_type_and_rotation() {
        let p = policy();
        let pg = RotationType::PostgresCredentials;
        let id = "3f0c5a0e-8d4b-4d1e-9a43-2b8f4c1d7e60";
        assert!(p.allows(Action::Rotate, pg, Target::Id(id)));
        assert!(p.allows(Action::Rotate, pg, Target::Name("pg-app")));
        assert!(!p.allows(Action::ReadCredentials, pg, Target::Id(id)));
        assert!(!p.allows(
            Action::Rotate,
            RotationType::MysqlCredentials,
            Target::Id(id)
        ));
        assert!(!p.allows(Action::Rotate, pg, Target::Name("public-x")));
        assert!(p.allows(
            Action::Read,
            RotationType::RedisCredentials,
            Target::Name("public-x")
        ));
        assert!(p.allows(
            Action::Read,
            pg,
            Target::Both {
                id: "00000000-0000-0000-0000-000000000000",
                name: "pg-app"
            }
        ));
        assert!(!Policy::default().allows(Action::Read, pg, Target::Id(id)));
    }

    #[test]
    fn listing_needs_a_read_grant_covering_the_type() {
        let p = policy();
        assert!(p.may_list(RotationType::Unspecified));
        assert!(p.may_list(RotationType::MysqlCredentials));
        let rotate_only = Policy {
            grants: vec![Grant {
                actions: vec![Action::Rotate],
                types: vec![TypeScope::Any],
                rotations: vec![pattern("*")],
            }],
        };
        assert!(!rotate_only.may_list(RotationType::Unspecified));
        assert!(!Policy::default().may_list(RotationType::PostgresCredentials));
    }
}
