//! Issued secrets through the engine, against an in-memory provider that issues numbered keys:
//! an interrupted attempt leaves no orphan, a full provider makes room with the replaced key
//! only, and keys rotator never recorded before the attempt are left alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use uuid::Uuid;

use super::backend::{LocalBackend, Origin, Scope};
use crate::config::registry::{LocalRotation, Registry};
use crate::crypto::KeyRing;
use crate::drivers::{
    AnyIssuer, BuildContext, Built, ConnectionConfig, DbSystem, Descriptor, DriverError,
    DriverErrorKind, Issuer, LocalDriver, Operations, Phase,
};
use crate::proto::{
    AwsIamUserSecretParameters, RotationType, generated_credential, rotation_parameters,
    secrets_mapping,
};
use crate::rotation::{Credential, CredentialShape, SecretSource};
use crate::secret::SecretString;
use crate::store::Store;

const SYSTEM: DbSystem = DbSystem::new("test.provider");

static DESCRIPTOR: Descriptor = Descriptor {
    app: "test-provider",
    default_port: 443,
    rotation_types: &[RotationType::AwsIamUserSecret],
    shape: CredentialShape::AccessKey,
    source: SecretSource::Issued,
    system: SYSTEM,
    operations: Operations {
        apply: "CreateKey",
        verify: "WhoAmI",
        revoke: "DeleteKey",
        probe: "ListKeys",
    },
    options: &[],
    build: unbuildable,
};

fn unbuildable(_: &BuildContext<'_>) -> Result<Built, DriverError> {
    Err(DriverError::new(
        DriverErrorKind::InvalidInput,
        SYSTEM,
        Phase::Build,
        "built by the test",
    ))
}

/// A provider holding at most `cap` keys. With `hang` set, `issue` creates the key and never
/// answers: the process "dies" between the provider's answer and rotator's write.
#[derive(Debug, Default)]
struct Provider {
    keys: Mutex<Vec<(String, String)>>,
    cap: usize,
    next: AtomicUsize,
    hang: AtomicBool,
}

#[derive(Debug, Clone)]
struct FakeIssuer(Arc<Provider>);

impl Provider {
    fn with_cap(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            ..Self::default()
        })
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    fn create(&self) -> Result<Credential, DriverError> {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= self.cap {
            return Err(DriverError::new(
                DriverErrorKind::LimitReached,
                SYSTEM,
                Phase::Issue,
                "two keys already",
            ));
        }
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        let credential = Credential {
            id: format!("KEY{n:03}"),
            secret: SecretString::new(format!("secret-{n}-{}", Uuid::new_v4())),
        };
        keys.push((credential.id.clone(), credential.secret.expose().to_owned()));
        Ok(credential)
    }
}

impl Issuer for FakeIssuer {
    async fn issue(&self) -> Result<Credential, DriverError> {
        let credential = self.0.create()?;
        if self.0.hang.load(Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        Ok(credential)
    }

    async fn verify(&self, credential: &Credential) -> Result<(), DriverError> {
        let keys = self.0.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys
            .iter()
            .any(|(id, secret)| *id == credential.id && secret == credential.secret.expose())
        {
            Ok(())
        } else {
            Err(DriverError::new(
                DriverErrorKind::LoginRejected,
                SYSTEM,
                Phase::Verify,
                "unknown key",
            ))
        }
    }

    async fn revoke(&self, id: &str) -> Result<(), DriverError> {
        let mut keys = self.0.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|(held, _)| held != id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>, DriverError> {
        Ok(self.0.ids())
    }
}

struct Harness {
    _dir: tempfile::TempDir,
    store: Store,
    rotation: LocalRotation,
    registry: Registry,
    keys: KeyRing,
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_sqlite(dir.path()).await.expect("store");
        let keys =
            KeyRing::parse(&[SecretString::new(crate::crypto::generate_key())]).expect("a key");
        let rotation = LocalRotation {
            id: Uuid::new_v4(),
            index: 0,
            name: "ci-deployer".into(),
            rotation_type: RotationType::AwsIamUserSecret,
            connection: "aws".into(),
            parameters: rotation_parameters::Kind::AwsIamUserSecret(AwsIamUserSecretParameters {
                user_name: "ci-deployer".into(),
                region: None,
            }),
            secrets_mapping: secrets_mapping::Kind::AwsIamUserSecret(Default::default()),
            interval_days: 30,
            rotate_at: (0, 0),
            auto_rotation: false,
            project_id: String::new(),
            environment: String::new(),
            folder_path: "/".into(),
            extras: None,
        };
        let mut registry = Registry::default();
        registry.rotations = vec![rotation.clone()];
        registry.keys = Some(keys.clone());
        Self {
            _dir: dir,
            store,
            rotation,
            registry,
            keys,
        }
    }

    /// A backend over the harness's store, as a freshly started process would build it.
    fn backend(&self, provider: &Arc<Provider>) -> LocalBackend {
        let issuer = AnyIssuer::new(
            FakeIssuer(Arc::clone(provider)),
            &DESCRIPTOR,
            ConnectionConfig {
                host: "provider.test".into(),
                port: 443,
                database: String::new(),
                admin_username: "rotator".into(),
                admin_password: SecretString::new("admin"),
                tls: Default::default(),
            },
        );
        let drivers = HashMap::from([(self.rotation.id, LocalDriver::Issued(issuer))]);
        LocalBackend::with_registered(
            super::registered::Registered::with_drivers(
                self.registry.clone(),
                self.keys.clone(),
                drivers,
            ),
            self.store.clone(),
        )
    }

    /// The ids of the stored credentials, by slot.
    async fn stored_ids(&self, backend: &LocalBackend) -> Vec<String> {
        let answer = backend
            .generated_credentials(&self.rotation)
            .await
            .expect("credentials");
        let mut ids: Vec<String> = answer
            .generated_credentials
            .iter()
            .map(|c| match &c.kind {
                Some(generated_credential::Kind::AwsIamUserSecret(aws)) => {
                    aws.access_key_id.clone()
                }
                other => panic!("an AWS credential was rendered as {other:?}"),
            })
            .collect();
        ids.sort();
        ids
    }
}

fn manual() -> Origin {
    Origin {
        scope: Scope::Rotate,
        scheduled: false,
        request_id: "test".into(),
        idempotency_key: None,
    }
}

#[tokio::test]
async fn an_attempt_killed_after_the_provider_answered_leaves_no_orphan() {
    let harness = Harness::new().await;
    let provider = Provider::with_cap(10);
    let backend = harness.backend(&provider);
    backend.start_up().await.expect("start-up issues slot 0");
    backend
        .rotate(harness.rotation.id, manual())
        .await
        .expect("slot 1");
    assert_eq!(harness.stored_ids(&backend).await, provider.ids());

    // A key someone else made: never recorded by rotator, there before the attempt.
    let unmanaged = provider.create().expect("room").id;

    // The provider issues a key, and the process dies before rotator records it.
    provider.hang.store(true, Ordering::SeqCst);
    let died = tokio::time::timeout(
        Duration::from_millis(500),
        backend.rotate(harness.rotation.id, manual()),
    )
    .await;
    assert!(died.is_err(), "the attempt was cut short mid-issue");
    drop(backend);
    let orphan = provider
        .ids()
        .into_iter()
        .max()
        .expect("the interrupted attempt's key");

    // A new process: recovery resumes the PREPARED attempt.
    provider.hang.store(false, Ordering::SeqCst);
    let restarted = harness.backend(&provider);
    restarted.start_up().await.expect("start-up");
    let open = restarted
        .resume_open_attempts()
        .await
        .expect("recovery, as the background task runs it");
    assert_eq!(open, 0, "the resumed attempt ended");
    let stored = harness.stored_ids(&restarted).await;
    assert!(!provider.ids().contains(&orphan), "the orphan is revoked");
    assert!(!stored.contains(&orphan));
    let mut expected = stored.clone();
    expected.push(unmanaged.clone());
    expected.sort();
    assert_eq!(
        provider.ids(),
        expected,
        "the provider holds the stored keys and the unmanaged one, nothing else"
    );
    let answer = restarted
        .generated_credentials(&harness.rotation)
        .await
        .expect("credentials");
    assert_eq!(answer.generated_credentials.len(), 2);
    assert_eq!(answer.active_index, 0, "the resumed attempt rotated slot 0");
}

#[tokio::test]
async fn a_full_provider_makes_room_with_the_replaced_key_only() {
    let harness = Harness::new().await;
    let provider = Provider::with_cap(2);
    let backend = harness.backend(&provider);
    backend.start_up().await.expect("slot 0");
    backend
        .rotate(harness.rotation.id, manual())
        .await
        .expect("slot 1");
    let before = harness.stored_ids(&backend).await;
    backend
        .rotate(harness.rotation.id, manual())
        .await
        .expect("slot 0 again, after revoking its old key");
    let after = harness.stored_ids(&backend).await;
    assert_eq!(after, provider.ids());
    assert!(after.contains(&before[1]), "the active key was kept");
    assert!(!after.contains(&before[0]), "the replaced key was revoked");
}

#[tokio::test]
async fn a_provider_full_of_unmanaged_keys_fails_and_deletes_nothing() {
    let harness = Harness::new().await;
    let provider = Provider::with_cap(2);
    let first = provider.create().expect("room").id;
    let second = provider.create().expect("room").id;
    let backend = harness.backend(&provider);
    backend
        .start_up()
        .await
        .expect("start-up logs, never fails");
    let error = backend
        .rotate(harness.rotation.id, manual())
        .await
        .expect_err("no room and nothing of rotator's to replace");
    assert!(
        matches!(&error, super::error::LocalError::Driver(d) if d.kind() == DriverErrorKind::LimitReached),
        "{error}"
    );
    assert_eq!(provider.ids(), vec![first, second], "nothing was deleted");
}
