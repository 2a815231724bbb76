//! What the local backend answers without rotating: a rotation, a list, one by name, and the
//! stored credentials decrypted.

use super::backend::LocalBackend;
use super::error::LocalError;
use super::registered::Registered;
use crate::config::registry::LocalRotation;
use crate::crypto::{CryptoError, Sealed, associated_data};
use crate::drivers::{LocalDriver, Slot};
use crate::proto::{
    GeneratedCredential, GetGeneratedCredentialsResponse, RotationName, RotationType,
    SecretRotation, SinkDelivery,
};
use crate::rotation::Credential;
use crate::secret::SecretString;
use crate::store::deliveries::DeliveryStore as _;
use crate::store::local::{RotationState, RotationStateStore as _, StoredCredential};

// === impl LocalBackend (reads) ===

impl LocalBackend {
    pub(super) async fn state(&self, rotation_id: &str) -> Result<RotationState, LocalError> {
        self.store()
            .rotation_state(rotation_id)
            .await?
            .ok_or_else(|| LocalError::NoCredential(rotation_id.to_owned()))
    }

    /// The rotation as `GetSecretRotation` answers it.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn get(&self, rotation: &LocalRotation) -> Result<SecretRotation, LocalError> {
        self.view_of(&self.current(), rotation).await
    }

    pub(super) async fn view_of(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
    ) -> Result<SecretRotation, LocalError> {
        let state = self.state(&rotation.id.to_string()).await?;
        Ok(super::view::secret_rotation(
            &current.registry,
            rotation,
            &state,
        ))
    }

    /// Every registered rotation of `rotation_type` (all for `Unspecified`) in `project_id`
    /// (all when empty).
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn list(
        &self,
        rotation_type: RotationType,
        project_id: &str,
    ) -> Result<Vec<SecretRotation>, LocalError> {
        let current = self.current();
        let mut out = Vec::new();
        for rotation in &current.registry.rotations {
            let type_ok = rotation_type == RotationType::Unspecified
                || rotation.rotation_type == rotation_type;
            if type_ok && (project_id.is_empty() || rotation.project_id == project_id) {
                out.push(self.view_of(&current, rotation).await?);
            }
        }
        Ok(out)
    }

    /// The registered rotation named `name` in the labels of `lookup`.
    pub fn by_name(&self, lookup: &RotationName) -> Option<LocalRotation> {
        self.current()
            .registry
            .rotations
            .iter()
            .find(|r| {
                r.name == lookup.name
                    && (lookup.project_id.is_empty() || r.project_id == lookup.project_id)
                    && (lookup.environment.is_empty() || r.environment == lookup.environment)
                    && (lookup.secret_path.is_empty() || r.folder_path == lookup.secret_path)
            })
            .cloned()
    }

    /// The stored credentials, decrypted, ordered by slot, each rendered as its rotation type's
    /// generated credential.
    ///
    /// # Errors
    ///
    /// The store failed, a credential does not decrypt, or none is issued yet.
    pub async fn generated_credentials(
        &self,
        rotation: &LocalRotation,
    ) -> Result<GetGeneratedCredentialsResponse, LocalError> {
        let rotation_id = rotation.id.to_string();
        let stored = self.store().credentials(&rotation_id).await?;
        let Some(first) = stored.first() else {
            return Err(LocalError::NoCredential(rotation_id));
        };
        let current = self.current();
        let (_, driver) = current.rotation(rotation.id)?;
        let mut generated_credentials = Vec::new();
        for c in &stored {
            let credential = open_stored(&current, &rotation_id, driver, c)?;
            let kind = crate::rotation::credential::generated(&rotation.parameters, &credential);
            generated_credentials.push(GeneratedCredential { kind: Some(kind) });
        }
        // With a single credential (after the first create) its index is the active one: 0.
        let active_index = if stored.len() == 1 {
            0
        } else {
            first.active_index
        };
        Ok(GetGeneratedCredentialsResponse {
            rotation_id,
            r#type: rotation.rotation_type as i32,
            active_index,
            generated_credentials,
        })
    }
}

// === impl LocalBackend (delivery reads) ===

/// A committed credential's mapped secrets, as the sinks receive them.
#[derive(Debug)]
pub struct CommittedValues {
    /// The version that committed it (1 is the first credential).
    pub version: u64,
    /// When that version was committed.
    pub committed_at: Option<chrono::DateTime<chrono::Utc>>,
    /// `secrets_mapping` names with their values, sorted by name.
    pub values: Vec<(String, SecretString)>,
}

impl LocalBackend {
    /// The committed credential of `rotation` (in `current`), decrypted and mapped; `None`
    /// before its first commit.
    ///
    /// # Errors
    ///
    /// The store failed, or the credential does not decrypt.
    pub async fn committed_values(
        &self,
        current: &Registered,
        rotation: &LocalRotation,
    ) -> Result<Option<CommittedValues>, LocalError> {
        let rotation_id = rotation.id.to_string();
        let Some(committed) = self.store().committed_credential(&rotation_id).await? else {
            return Ok(None);
        };
        let (_, driver) = current.rotation(rotation.id)?;
        let credential = open_stored(current, &rotation_id, driver, &committed.credential)?;
        let generated = GeneratedCredential {
            kind: Some(crate::rotation::credential::generated(
                &rotation.parameters,
                &credential,
            )),
        };
        Ok(Some(CommittedValues {
            version: committed.version,
            committed_at: committed.committed_at,
            values: crate::rotation::json::mapped_values(&rotation.secrets_mapping, &generated),
        }))
    }

    /// Where each configured sink of `rotation` stands, as `GetSecretRotation` shows it; a
    /// sink with nothing owed yet shows zeros.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn deliveries(
        &self,
        rotation: &LocalRotation,
    ) -> Result<Vec<SinkDelivery>, LocalError> {
        let rows = self.store().deliveries(&rotation.id.to_string()).await?;
        Ok(rotation
            .sinks()
            .iter()
            .map(|sink| super::view::sink_delivery(sink, rows.iter().find(|r| r.sink == sink.name)))
            .collect())
    }
}

/// A stored credential decrypted. Rows stored before credential ids were kept name the slot's
/// configured user.
pub(super) fn open_stored(
    current: &Registered,
    rotation_id: &str,
    driver: &LocalDriver,
    stored: &StoredCredential,
) -> Result<Credential, LocalError> {
    let plain = current.keys.open(
        &Sealed {
            key_id: stored.key_id.clone(),
            bytes: stored.ciphertext.clone(),
        },
        &associated_data(rotation_id, stored.slot),
    )?;
    let secret = String::from_utf8(plain).map_err(|_| LocalError::Crypto(CryptoError::Open))?;
    let id = match (&stored.id, driver) {
        (Some(id), _) => id.clone(),
        (None, LocalDriver::Chosen(d)) => {
            let slot = Slot::from_index(stored.slot).unwrap_or(Slot::First);
            d.driver.username_for(slot).to_owned()
        }
        (None, LocalDriver::Issued(_)) => String::new(),
    };
    Ok(Credential {
        id,
        secret: SecretString::new(secret),
    })
}
