//! The generated credential of each rotation type (spec `rotation-types.md` §0): its shape,
//! who chooses its secret, and how a stored credential renders as the API's
//! `GeneratedCredential`. Exhaustive over the 14 types, so a type is never rendered as another.

use crate::proto::{
    Auth0ClientSecretCredential, AwsIamUserSecretCredential, AzureClientSecretCredential,
    ClientSecretWithIdCredential, LdapPasswordCredential, RotationType, UsernamePasswordCredential,
    generated_credential::Kind, rotation_parameters,
};
use crate::secret::SecretString;

/// Who chooses a credential's secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// rotator generates the password and sets it on the target (databases, directories,
    /// accounts, Auth0). The candidate is sealed in the store before the target is touched.
    Chosen,
    /// The provider creates the secret, shows it once and gives it an id (AWS access keys, Azure,
    /// Okta and Databricks client secrets). The answer is sealed in the store before anything
    /// else happens; recovery lists the provider's keys to find one it created but never recorded.
    Issued,
}

/// The fields of a generated credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialShape {
    /// `{username, password}`: SQL, MongoDB, Redis, Unix and Windows accounts.
    UsernamePassword,
    /// `{dn, password}`: LDAP.
    DnPassword,
    /// `{clientId, clientSecret}`: Auth0 (the secret is set in place).
    ClientSecret,
    /// `{clientId, clientSecret, secretId}`: Okta, Databricks.
    ClientSecretWithSecretId,
    /// `{clientId, clientSecret, keyId}`: Azure.
    ClientSecretWithKeyId,
    /// `{accessKeyId, secretAccessKey}`: AWS IAM.
    AccessKey,
}

/// One credential of a slot: who it is and its secret.
///
/// `id` is the login name (username, DN) for a chosen secret, and the provider's id of the
/// secret (access key id, key id, secret id) for an issued one. Client ids are not stored: they
/// come from the rotation's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The login name or the provider's id of the secret.
    pub id: String,
    /// The secret; `Debug` redacts it.
    pub secret: SecretString,
}

// === impl CredentialShape ===

impl CredentialShape {
    /// The shape of `rotation_type`'s credential; `None` for `Unspecified`.
    pub fn of(rotation_type: RotationType) -> Option<Self> {
        use RotationType as T;
        Some(match rotation_type {
            T::Unspecified => return None,
            T::PostgresCredentials
            | T::MysqlCredentials
            | T::MssqlCredentials
            | T::OracledbCredentials
            | T::MongodbCredentials
            | T::RedisCredentials
            | T::UnixLinuxLocalAccount
            | T::WindowsLocalAccount => Self::UsernamePassword,
            T::LdapPassword => Self::DnPassword,
            T::Auth0ClientSecret => Self::ClientSecret,
            T::OktaClientSecret | T::DatabricksServicePrincipalSecret => {
                Self::ClientSecretWithSecretId
            }
            T::AzureClientSecret => Self::ClientSecretWithKeyId,
            T::AwsIamUserSecret => Self::AccessKey,
        })
    }

    /// The API field names, in order: what `id` and `secret` are called, then any field taken
    /// from the parameters.
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Self::UsernamePassword => &["username", "password"],
            Self::DnPassword => &["dn", "password"],
            Self::ClientSecret => &["clientId", "clientSecret"],
            Self::ClientSecretWithSecretId => &["secretId", "clientSecret", "clientId"],
            Self::ClientSecretWithKeyId => &["keyId", "clientSecret", "clientId"],
            Self::AccessKey => &["accessKeyId", "secretAccessKey"],
        }
    }
}

// === impl SecretSource ===

impl SecretSource {
    /// Who chooses the secret of `rotation_type`'s credential; `None` for `Unspecified`.
    pub fn of(rotation_type: RotationType) -> Option<Self> {
        use RotationType as T;
        Some(match rotation_type {
            T::Unspecified => return None,
            T::OktaClientSecret
            | T::AzureClientSecret
            | T::AwsIamUserSecret
            | T::DatabricksServicePrincipalSecret => Self::Issued,
            _ => Self::Chosen,
        })
    }
}

/// A stored credential rendered as the API's generated credential of its rotation's type.
///
/// Client ids come from `parameters` (spec §0: the payload takes Okta's and Azure's `clientId`
/// from the parameters).
pub fn generated(parameters: &rotation_parameters::Kind, credential: &Credential) -> Kind {
    use rotation_parameters::Kind as P;
    let id = credential.id.clone();
    let secret = credential.secret.expose().to_owned();
    let user =
        |username: String, password: String| UsernamePasswordCredential { username, password };
    let with_id =
        |client_id: &str, secret_id: String, client_secret: String| ClientSecretWithIdCredential {
            client_id: client_id.to_owned(),
            client_secret,
            secret_id,
        };
    match parameters {
        P::PostgresCredentials(_) => Kind::PostgresCredentials(user(id, secret)),
        P::MysqlCredentials(_) => Kind::MysqlCredentials(user(id, secret)),
        P::MssqlCredentials(_) => Kind::MssqlCredentials(user(id, secret)),
        P::OracledbCredentials(_) => Kind::OracledbCredentials(user(id, secret)),
        P::MongodbCredentials(_) => Kind::MongodbCredentials(user(id, secret)),
        P::RedisCredentials(_) => Kind::RedisCredentials(user(id, secret)),
        P::UnixLinuxLocalAccount(_) => Kind::UnixLinuxLocalAccount(user(id, secret)),
        P::WindowsLocalAccount(_) => Kind::WindowsLocalAccount(user(id, secret)),
        P::LdapPassword(_) => Kind::LdapPassword(LdapPasswordCredential {
            dn: id,
            password: secret,
        }),
        P::Auth0ClientSecret(p) => Kind::Auth0ClientSecret(Auth0ClientSecretCredential {
            client_id: p.client_id.clone(),
            client_secret: secret,
        }),
        P::OktaClientSecret(p) => Kind::OktaClientSecret(with_id(&p.client_id, id, secret)),
        P::DatabricksServicePrincipalSecret(p) => {
            Kind::DatabricksServicePrincipalSecret(with_id(&p.client_id, id, secret))
        }
        P::AzureClientSecret(p) => Kind::AzureClientSecret(AzureClientSecretCredential {
            client_id: p.client_id.clone(),
            client_secret: secret,
            key_id: id,
        }),
        P::AwsIamUserSecret(_) => Kind::AwsIamUserSecret(AwsIamUserSecretCredential {
            access_key_id: id,
            secret_access_key: secret,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::TYPES;

    #[test]
    fn every_type_has_a_shape_and_a_source() {
        for info in TYPES {
            assert!(
                CredentialShape::of(info.rotation_type).is_some(),
                "{}",
                info.slug
            );
            assert!(
                SecretSource::of(info.rotation_type).is_some(),
                "{}",
                info.slug
            );
        }
        assert_eq!(CredentialShape::of(RotationType::Unspecified), None);
    }

    #[test]
    fn a_credential_renders_as_its_own_type() {
        let credential = Credential {
            id: "AKIAEXAMPLE".into(),
            secret: SecretString::new("s3cr3t"),
        };
        let aws = rotation_parameters::Kind::AwsIamUserSecret(Default::default());
        assert_eq!(
            generated(&aws, &credential),
            Kind::AwsIamUserSecret(AwsIamUserSecretCredential {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: "s3cr3t".into(),
            })
        );
        let redis = rotation_parameters::Kind::RedisCredentials(Default::default());
        assert!(matches!(
            generated(&redis, &credential),
            Kind::RedisCredentials(_)
        ));
    }
}
