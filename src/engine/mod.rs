//! The engine routes each call to a backend, runs rotations in tracked tasks so a cancelled call
//! cannot cut one short, and reports every forwarded attempt to the attempt recorder (the
//! outbox); local attempts write their event in their own commit.

pub mod error;
mod follow_up;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;
use uuid::Uuid;

pub use self::error::EngineError;
use crate::config::registry::LocalRotation;
use crate::context::CallContext;
use crate::events::AttemptRecorder;
use crate::local::{LocalBackend, Origin, Scope};
use crate::proto::{
    Backend, GetGeneratedCredentialsResponse, RotationName, RotationType, SecretRotation, Trigger,
};
use crate::rotation::{AttemptRecord, Classify as _};
use crate::telemetry;
use crate::upstream::infisical::{Infisical, UpstreamError};

/// Answer a little before the caller's deadline so the caller gets our status, not a transport
/// timeout.
const DEADLINE_MARGIN: Duration = Duration::from_millis(10);

/// Routes and orchestrates calls.
#[derive(Debug, Clone)]
pub struct Engine {
    infisical: Option<Arc<Infisical>>,
    enabled_types: Arc<HashSet<RotationType>>,
    recorder: Option<Arc<dyn AttemptRecorder>>,
    tasks: TaskTracker,
    local: Option<Arc<LocalBackend>>,
}

// === impl Engine ===

impl Engine {
    /// Creates an engine over the configured backends.
    pub fn new(
        infisical: Option<Arc<Infisical>>,
        enabled_types: impl IntoIterator<Item = RotationType>,
        recorder: Option<Arc<dyn AttemptRecorder>>,
    ) -> Self {
        Self {
            infisical,
            enabled_types: Arc::new(enabled_types.into_iter().collect()),
            recorder,
            tasks: TaskTracker::new(),
            local: None,
        }
    }

    /// Serves the rotations of the local registry with `local` (DESIGN §4: a registered id is
    /// served locally; others are forwarded when Infisical is configured).
    #[must_use]
    pub fn with_local(mut self, local: Arc<LocalBackend>) -> Self {
        self.local = Some(local);
        self
    }

    /// The local rotation registered under `id`, checked against the request's type.
    fn local_rotation(
        &self,
        rotation_type: RotationType,
        id: Uuid,
    ) -> Result<Option<(&Arc<LocalBackend>, LocalRotation)>, EngineError> {
        let Some(local) = &self.local else {
            return Ok(None);
        };
        match local.lookup(id, rotation_type) {
            None => Ok(None),
            Some(found) => Ok(Some((local, found?.clone()))),
        }
    }

    /// The tracker of rotation tasks, so shutdown can wait for them.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The Infisical backend, when configured.
    pub fn infisical(&self) -> Option<&Arc<Infisical>> {
        self.infisical.as_ref()
    }

    fn check_enabled(&self, rotation_type: RotationType) -> Result<(), EngineError> {
        if self.enabled_types.contains(&rotation_type) {
            Ok(())
        } else {
            Err(EngineError::TypeNotEnabled(rotation_type))
        }
    }

    fn upstream(&self, what: &str) -> Result<&Arc<Infisical>, EngineError> {
        self.infisical
            .as_ref()
            .ok_or_else(|| EngineError::NoBackend(what.to_owned()))
    }

    /// Rotates one rotation. The work runs in a tracked task: if the caller goes away or its
    /// deadline passes, the attempt still finishes and is recorded.
    ///
    /// # Errors
    ///
    /// Routing failures, the backend's failure, or [`EngineError::DeadlineExceeded`].
    pub async fn rotate(
        &self,
        rotation_type: RotationType,
        rotation_id: Uuid,
        ctx: CallContext,
    ) -> Result<SecretRotation, EngineError> {
        self.check_enabled(rotation_type)?;
        if let Some((local, _)) = self.local_rotation(rotation_type, rotation_id)? {
            let local = Arc::clone(local);
            let deadline = ctx.deadline;
            let origin = Origin {
                scope: Scope::Rotate,
                scheduled: false,
                request_id: ctx.request_id.clone(),
                idempotency_key: ctx.idempotency_key.clone(),
            };
            let span = telemetry::spans::rotation(
                rotation_type,
                &rotation_id.to_string(),
                Backend::Local,
                Trigger::Manual,
                &ctx.request_id,
            );
            let outcome_span = span.clone();
            let task = self.tasks.spawn(
                async move {
                    let started = Instant::now();
                    let result = local
                        .rotate(rotation_id, origin)
                        .await
                        .map_err(EngineError::from);
                    telemetry::spans::rotation_outcome(
                        &outcome_span,
                        rotation_type,
                        Backend::Local,
                        result.as_ref().err().map(|e| e.failure()).as_ref(),
                        started.elapsed(),
                    );
                    result
                }
                .instrument(span),
            );
            return wait_for(task, deadline).await;
        }
        let id = rotation_id.to_string();
        let infisical = Arc::clone(self.upstream(&id)?);
        let recorder = self.recorder.clone();
        let deadline = ctx.deadline;
        let span = telemetry::spans::rotation(
            rotation_type,
            &id,
            Backend::Forwarded,
            Trigger::Manual,
            &ctx.request_id,
        );
        let attempt_span = span.clone();
        let work = async move {
            let started = Instant::now();
            let result = infisical
                .rotate(rotation_type, &id, &ctx)
                .await
                .map_err(EngineError::from);
            let failure = result.as_ref().err().map(|e| e.failure());
            let attempt = AttemptRecord {
                event_id: Uuid::now_v7(),
                time: Utc::now(),
                rotation_id: id,
                rotation_type,
                rotation: result.as_ref().ok().cloned(),
                backend: Backend::Forwarded,
                trigger: Trigger::Manual,
                attempt_number: 1,
                duration: started.elapsed(),
                request_id: ctx.request_id.clone(),
                upstream_req_id: failure.as_ref().and_then(|f| f.upstream_req_id.clone()),
                failure,
                resolves_event_id: None,
            };
            telemetry::spans::rotation_finished(&attempt_span, &attempt);
            let first_event_id = attempt.event_id;
            if let Some(recorder) = &recorder
                && let Err(error) = recorder.record(attempt).await
            {
                tracing::error!(%error, "could not record the rotation attempt for its event");
            }
            if let (
                Err(EngineError::Upstream(UpstreamError::OutcomeUnknown { baseline, .. })),
                Some(recorder),
            ) = (&result, recorder)
            {
                // Detached: it outlives the call and is bounded by its own budget.
                tokio::spawn(
                    follow_up::resolve_unknown_outcome(follow_up::Unknown {
                        infisical: Arc::clone(&infisical),
                        recorder,
                        rotation_type,
                        rotation_id: rotation_id.to_string(),
                        baseline: *baseline,
                        first_event_id,
                        request_id: ctx.request_id.clone(),
                    })
                    .in_current_span(),
                );
            }
            result
        };
        let task = self.tasks.spawn(work.instrument(span));
        wait_for(task, deadline).await
    }

    /// Reads one rotation by id.
    ///
    /// # Errors
    ///
    /// Routing or backend failures.
    pub async fn get(
        &self,
        rotation_type: RotationType,
        rotation_id: Uuid,
        ctx: &CallContext,
    ) -> Result<SecretRotation, EngineError> {
        self.check_enabled(rotation_type)?;
        if let Some((local, rotation)) = self.local_rotation(rotation_type, rotation_id)? {
            return Ok(local.get(&rotation).await?);
        }
        let id = rotation_id.to_string();
        Ok(self.upstream(&id)?.get(rotation_type, &id, ctx).await?)
    }

    /// Where each sink of a local rotation stands; empty for a forwarded one.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn deliveries(
        &self,
        rotation: &SecretRotation,
    ) -> Result<Vec<crate::proto::SinkDelivery>, EngineError> {
        let (Some(local), Ok(id)) = (&self.local, Uuid::parse_str(&rotation.id)) else {
            return Ok(Vec::new());
        };
        let current = local.current();
        match current.registry.rotation(id) {
            Some(registered) => Ok(local.deliveries(registered).await?),
            None => Ok(Vec::new()),
        }
    }

    /// The committed version of a local rotation and one confirmation per consumer it names;
    /// `(0, [])` for a forwarded one.
    ///
    /// # Errors
    ///
    /// The store failed.
    pub async fn confirmations(
        &self,
        rotation: &SecretRotation,
    ) -> Result<(u64, Vec<crate::proto::ConsumerConfirmation>), EngineError> {
        let (Some(local), Ok(id)) = (&self.local, Uuid::parse_str(&rotation.id)) else {
            return Ok((0, Vec::new()));
        };
        let current = local.current();
        match current.registry.rotation(id) {
            Some(registered) => Ok(local.confirmations(registered).await?),
            None => Ok((0, Vec::new())),
        }
    }

    /// Records that `consumer` uses the committed `version` of a local rotation (confirmed
    /// handover; there is none for forwarded rotations).
    ///
    /// # Errors
    ///
    /// [`EngineError::NotLocal`] for an id the local registry does not hold; the local
    /// backend's refusals.
    pub async fn confirm_credential_in_use(
        &self,
        rotation_type: RotationType,
        rotation_id: Uuid,
        version: u64,
        consumer: &str,
        ctx: &CallContext,
    ) -> Result<crate::proto::ConfirmCredentialInUseResponse, EngineError> {
        self.check_enabled(rotation_type)?;
        let Some((local, rotation)) = self.local_rotation(rotation_type, rotation_id)? else {
            return Err(EngineError::NotLocal(rotation_id.to_string()));
        };
        Ok(local
            .confirm(&rotation, consumer, version, &ctx.request_id)
            .await?)
    }

    /// Reads one rotation by name.
    ///
    /// # Errors
    ///
    /// Routing or backend failures.
    pub async fn get_by_name(
        &self,
        rotation_type: RotationType,
        name: &RotationName,
        ctx: &CallContext,
    ) -> Result<SecretRotation, EngineError> {
        self.check_enabled(rotation_type)?;
        if let Some(local) = &self.local
            && let Some(rotation) = local.by_name(name)
            && rotation.rotation_type == rotation_type
        {
            return Ok(local.get(&rotation).await?);
        }
        Ok(self
            .upstream(&name.name)?
            .get_by_name(rotation_type, name, ctx)
            .await?)
    }

    /// Lists rotations of one type, or of every enabled type for `Unspecified`.
    ///
    /// # Errors
    ///
    /// Routing or backend failures.
    pub async fn list(
        &self,
        rotation_type: RotationType,
        project_id: &str,
        ctx: &CallContext,
    ) -> Result<Vec<SecretRotation>, EngineError> {
        if rotation_type != RotationType::Unspecified {
            self.check_enabled(rotation_type)?;
        }
        let mut rotations = match &self.local {
            Some(local) => local.list(rotation_type, project_id).await?,
            None => Vec::new(),
        };
        if self.local.is_none() || self.infisical.is_some() {
            rotations.extend(
                self.upstream(project_id)?
                    .list(rotation_type, project_id, ctx)
                    .await?,
            );
        }
        rotations.retain(|r| self.enabled_types.contains(&r.r#type()));
        Ok(rotations)
    }

    /// Reads the generated credentials of a rotation.
    ///
    /// # Errors
    ///
    /// Routing or backend failures.
    pub async fn generated_credentials(
        &self,
        rotation_type: RotationType,
        rotation_id: Uuid,
        ctx: &CallContext,
    ) -> Result<GetGeneratedCredentialsResponse, EngineError> {
        self.check_enabled(rotation_type)?;
        if let Some((local, rotation)) = self.local_rotation(rotation_type, rotation_id)? {
            return Ok(local.generated_credentials(&rotation).await?);
        }
        let id = rotation_id.to_string();
        Ok(self
            .upstream(&id)?
            .generated_credentials(rotation_type, &id, ctx)
            .await?)
    }
}

/// Waits for a rotation task, answering a little before the caller's deadline.
async fn wait_for(
    task: tokio::task::JoinHandle<Result<SecretRotation, EngineError>>,
    deadline: Option<Instant>,
) -> Result<SecretRotation, EngineError> {
    let joined = match deadline {
        Some(deadline) => match tokio::time::timeout_at(
            deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline),
            task,
        )
        .await
        {
            Ok(joined) => joined,
            Err(_) => return Err(EngineError::DeadlineExceeded),
        },
        None => task.await,
    };
    joined.map_err(EngineError::TaskFailed)?
}
