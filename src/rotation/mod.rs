//! The rotation domain: the 14 rotation types and their upstream names, the shape of each
//! type's credential, one attempt's record and the plain failure value errors classify into.
//!
//! - [`credential`]: generated-credential shapes, who chooses the secret, rendering.
//! - [`attempt`]: [`AttemptState`] and [`AttemptRecord`].
//! - [`failure`]: [`Classify`], [`Classification`], [`Failure`].
//! - [`json`]: Infisical JSON ↔ proto.

pub mod attempt;
pub mod credential;
pub mod failure;
pub mod json;

pub use self::attempt::{AttemptRecord, AttemptState};
pub use self::credential::{Credential, CredentialShape, SecretSource};
pub use self::failure::{Classification, Classify, Failure};

pub use crate::proto::RotationType;

/// Static facts about one rotation type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeInfo {
    /// The proto enum value.
    pub rotation_type: RotationType,
    /// The upstream slug used in URLs and JSON, e.g. `postgres-credentials`.
    pub slug: &'static str,
    /// The display name used in upstream messages, e.g. `PostgreSQL Credentials`.
    pub display_name: &'static str,
    /// The connection app literal, e.g. `postgres`.
    pub app: &'static str,
    /// Whether the previous credential stays valid for one more interval.
    pub dual_phase: bool,
}

const fn info(
    rotation_type: RotationType,
    slug: &'static str,
    display_name: &'static str,
    app: &'static str,
    dual_phase: bool,
) -> TypeInfo {
    TypeInfo {
        rotation_type,
        slug,
        display_name,
        app,
        dual_phase,
    }
}

/// Every supported rotation type, in proto enum order.
pub const TYPES: [TypeInfo; 14] = [
    info(
        RotationType::PostgresCredentials,
        "postgres-credentials",
        "PostgreSQL Credentials",
        "postgres",
        true,
    ),
    info(
        RotationType::MysqlCredentials,
        "mysql-credentials",
        "MySQL Credentials",
        "mysql",
        true,
    ),
    info(
        RotationType::MssqlCredentials,
        "mssql-credentials",
        "Microsoft SQL Server Credentials",
        "mssql",
        true,
    ),
    info(
        RotationType::OracledbCredentials,
        "oracledb-credentials",
        "OracleDB Credentials",
        "oracledb",
        true,
    ),
    info(
        RotationType::MongodbCredentials,
        "mongodb-credentials",
        "MongoDB Credentials",
        "mongodb",
        true,
    ),
    info(
        RotationType::RedisCredentials,
        "redis-credentials",
        "Redis Credentials",
        "redis",
        true,
    ),
    info(
        RotationType::LdapPassword,
        "ldap-password",
        "LDAP Password",
        "ldap",
        false,
    ),
    info(
        RotationType::UnixLinuxLocalAccount,
        "unix-linux-local-account",
        "Unix/Linux Local Account",
        "ssh",
        false,
    ),
    info(
        RotationType::WindowsLocalAccount,
        "windows-local-account",
        "Windows Local Account",
        "smb",
        false,
    ),
    info(
        RotationType::Auth0ClientSecret,
        "auth0-client-secret",
        "Auth0 Client Secret",
        "auth0",
        false,
    ),
    info(
        RotationType::OktaClientSecret,
        "okta-client-secret",
        "Okta Client Secret",
        "okta",
        true,
    ),
    info(
        RotationType::AzureClientSecret,
        "azure-client-secret",
        "Azure Client Secret",
        "azure-client-secrets",
        true,
    ),
    info(
        RotationType::AwsIamUserSecret,
        "aws-iam-user-secret",
        "AWS IAM User Secret",
        "aws",
        true,
    ),
    info(
        RotationType::DatabricksServicePrincipalSecret,
        "databricks-service-principal-secret",
        "Databricks Service Principal Secret",
        "databricks",
        true,
    ),
];

// === impl RotationType ===

impl RotationType {
    /// The static facts of this type; `None` for `Unspecified`.
    pub fn info(self) -> Option<&'static TypeInfo> {
        TYPES.iter().find(|t| t.rotation_type == self)
    }

    /// The upstream slug; `None` for `Unspecified`.
    pub fn slug(self) -> Option<&'static str> {
        self.info().map(|t| t.slug)
    }

    /// Parses an upstream slug (`postgres-credentials`) or a proto name
    /// (`ROTATION_TYPE_POSTGRES_CREDENTIALS`, `POSTGRES_CREDENTIALS`).
    pub fn parse(text: &str) -> Option<Self> {
        if let Some(t) = TYPES.iter().find(|t| t.slug == text) {
            return Some(t.rotation_type);
        }
        let upper = text.to_ascii_uppercase().replace('-', "_");
        let name = upper.strip_prefix("ROTATION_TYPE_").unwrap_or(&upper);
        Self::from_str_name(&format!("ROTATION_TYPE_{name}")).filter(|t| *t != Self::Unspecified)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_through_its_slug_and_proto_name() {
        for t in TYPES {
            assert_eq!(RotationType::parse(t.slug), Some(t.rotation_type));
            assert_eq!(
                RotationType::parse(t.rotation_type.as_str_name()),
                Some(t.rotation_type)
            );
            assert_eq!(t.rotation_type.slug(), Some(t.slug));
        }
    }

    #[test]
    fn table_covers_every_enum_value_once() {
        for (index, t) in TYPES.iter().enumerate() {
            assert_eq!(t.rotation_type as usize, index + 1);
        }
        assert_eq!(RotationType::Unspecified.info(), None);
        assert_eq!(RotationType::parse("unspecified"), None);
        assert_eq!(RotationType::parse("no-such-type"), None);
    }
}
