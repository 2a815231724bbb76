//! The gRPC api layer: admission (request id, deadline, limits), authentication, validation,
//! authorization, and the mapping of results to responses and statuses. It decides nothing
//! about rotations; the engine does.

pub mod admission;
pub mod auth;
pub mod authz;
pub mod error;
pub mod rescue;
pub mod status;
pub mod validate;

use std::future::Future;
use std::sync::Arc;

use tonic::{Request, Response, Status};
use tracing::Instrument;

use self::admission::Admission;
use self::auth::{Authenticator, Caller};
use self::authz::{Action, Target};
use self::error::ServiceError;
use crate::context::CallContext;
use crate::engine::Engine;
use crate::proto::secret_rotation_service_server::{SERVICE_NAME, SecretRotationService};
use crate::proto::{
    ConfirmCredentialInUseRequest, ConfirmCredentialInUseResponse, GetGeneratedCredentialsRequest,
    GetGeneratedCredentialsResponse, GetSecretRotationRequest, GetSecretRotationResponse,
    ListSecretRotationsRequest, ListSecretRotationsResponse, RotateSecretsRequest,
    RotateSecretsResponse, get_secret_rotation_request,
};
use crate::rotation::Classify as _;
use crate::telemetry::spans::{ServerCall, record_rotation};

/// The `rotator.v1.SecretRotationService` implementation.
#[derive(Debug, Clone)]
pub struct RotatorApi {
    engine: Engine,
    admission: Admission,
    auth: Arc<Authenticator>,
}

impl RotatorApi {
    /// Serves `engine`, at most `max_concurrent_calls` calls at once. It asks callers for no
    /// identity until [`RotatorApi::with_authenticator`] says otherwise; `server::run` always
    /// does, from the configuration.
    pub fn new(engine: Engine, max_concurrent_calls: usize) -> Self {
        Self {
            engine,
            admission: Admission::new(max_concurrent_calls),
            auth: Arc::new(Authenticator::open()),
        }
    }

    /// Authenticates every call with `auth`.
    pub fn with_authenticator(mut self, auth: Arc<Authenticator>) -> Self {
        self.auth = auth;
        self
    }

    /// Admits and authenticates the call, runs `handler` (which validates and authorizes before
    /// the engine) inside the call's server span, and answers with `x-request-id` on success and
    /// failure.
    async fn serve<T, R, F, Fut>(
        &self,
        method: &'static str,
        request: Request<T>,
        handler: F,
    ) -> Result<Response<R>, Status>
    where
        F: FnOnce(T, CallContext, Caller) -> Fut,
        Fut: Future<Output = Result<R, ServiceError>>,
    {
        let admitted = self.admission.admit(request.metadata());
        let request_id = match &admitted {
            Ok(admitted) => &admitted.ctx.request_id,
            Err(rejected) => &rejected.0.request_id,
        };
        let call = ServerCall::start(&request, SERVICE_NAME, method, request_id);
        let admitted = match admitted {
            Ok(admitted) => admitted,
            Err(rejected) => {
                let (ctx, error) = *rejected;
                let status = call.span().in_scope(|| reject(&error, &ctx));
                call.finish(Err(&error.failure()));
                return Err(status);
            }
        };
        let ctx = admitted.ctx.clone();
        let certs = request.peer_certs();
        let caller = match self
            .auth
            .authenticate(request.metadata(), certs.as_deref().map(Vec::as_slice))
        {
            Ok(caller) => caller,
            Err(error) => {
                let error = ServiceError::Unauthenticated(error);
                let status = call.span().in_scope(|| reject(&error, &ctx));
                call.finish(Err(&error.failure()));
                return Err(status);
            }
        };
        match handler(request.into_inner(), ctx.clone(), caller)
            .instrument(call.span().clone())
            .await
        {
            Ok(message) => {
                call.finish(Ok(()));
                let mut response = Response::new(message);
                status::insert_request_id(response.metadata_mut(), &ctx.request_id);
                Ok(response)
            }
            Err(error) => {
                let status = call.span().in_scope(|| reject(&error, &ctx));
                call.finish(Err(&error.failure()));
                Err(status)
            }
        }
    }
}

fn reject(error: &ServiceError, ctx: &CallContext) -> Status {
    let class = error.classify();
    tracing::info!(request_id = %ctx.request_id, reason = class.reason, code = ?class.code, "call failed: {error}");
    status::to_status(error, ctx)
}

#[tonic::async_trait]
impl SecretRotationService for RotatorApi {
    async fn rotate_secrets(
        &self,
        request: Request<RotateSecretsRequest>,
    ) -> Result<Response<RotateSecretsResponse>, Status> {
        self.serve("RotateSecrets", request, |req, ctx, caller| async move {
            let rotation_type = validate::rotation_type(req.r#type)?;
            let rotation_id = validate::rotation_id(&req.rotation_id)?;
            let id = rotation_id.to_string();
            let target = Target::Id(&id);
            authz::authorize(
                &caller,
                "RotateSecrets",
                Action::Rotate,
                rotation_type,
                target,
                &ctx,
            )?;
            record_rotation(rotation_type, &id);
            let rotation = self.engine.rotate(rotation_type, rotation_id, ctx).await?;
            Ok(RotateSecretsResponse {
                secret_rotation: Some(rotation),
            })
        })
        .await
    }

    async fn get_secret_rotation(
        &self,
        request: Request<GetSecretRotationRequest>,
    ) -> Result<Response<GetSecretRotationResponse>, Status> {
        self.serve(
            "GetSecretRotation",
            request,
            |req, ctx, caller| async move {
                const METHOD: &str = "GetSecretRotation";
                let rotation_type = validate::rotation_type(req.r#type)?;
                let rotation = match req.lookup {
                    Some(get_secret_rotation_request::Lookup::RotationId(id)) => {
                        let id = validate::rotation_id(&id)?;
                        let text = id.to_string();
                        let target = Target::Id(&text);
                        authz::authorize(
                            &caller,
                            METHOD,
                            Action::Read,
                            rotation_type,
                            target,
                            &ctx,
                        )?;
                        record_rotation(rotation_type, &text);
                        self.engine.get(rotation_type, id, &ctx).await?
                    }
                    Some(get_secret_rotation_request::Lookup::ByName(name)) => {
                        validate::rotation_name(&name)?;
                        let target = Target::Name(&name.name);
                        authz::authorize(
                            &caller,
                            METHOD,
                            Action::Read,
                            rotation_type,
                            target,
                            &ctx,
                        )?;
                        self.engine.get_by_name(rotation_type, &name, &ctx).await?
                    }
                    None => {
                        return Err(ServiceError::invalid(
                            self::error::Field::RotationId,
                            "set rotation_id or by_name",
                        ));
                    }
                };
                let deliveries = self.engine.deliveries(&rotation).await?;
                let (committed_version, confirmations) =
                    self.engine.confirmations(&rotation).await?;
                Ok(GetSecretRotationResponse {
                    secret_rotation: Some(rotation),
                    deliveries,
                    confirmations,
                    committed_version,
                })
            },
        )
        .await
    }

    async fn list_secret_rotations(
        &self,
        request: Request<ListSecretRotationsRequest>,
    ) -> Result<Response<ListSecretRotationsResponse>, Status> {
        self.serve(
            "ListSecretRotations",
            request,
            |req, ctx, caller| async move {
                let rotation_type = validate::type_filter(req.r#type)?;
                let project_id = validate::project_id(&req.project_id)?;
                let filter =
                    authz::list_filter(&caller, "ListSecretRotations", rotation_type, &ctx)?;
                let mut secret_rotations =
                    self.engine.list(rotation_type, project_id, &ctx).await?;
                secret_rotations.retain(|r| filter.allows(r));
                Ok(ListSecretRotationsResponse { secret_rotations })
            },
        )
        .await
    }

    async fn get_generated_credentials(
        &self,
        request: Request<GetGeneratedCredentialsRequest>,
    ) -> Result<Response<GetGeneratedCredentialsResponse>, Status> {
        self.serve(
            "GetGeneratedCredentials",
            request,
            |req, ctx, caller| async move {
                let rotation_type = validate::rotation_type(req.r#type)?;
                let rotation_id = validate::rotation_id(&req.rotation_id)?;
                let id = rotation_id.to_string();
                let target = Target::Id(&id);
                let action = Action::ReadCredentials;
                authz::authorize(
                    &caller,
                    "GetGeneratedCredentials",
                    action,
                    rotation_type,
                    target,
                    &ctx,
                )?;
                record_rotation(rotation_type, &id);
                Ok(self
                    .engine
                    .generated_credentials(rotation_type, rotation_id, &ctx)
                    .await?)
            },
        )
        .await
    }

    async fn confirm_credential_in_use(
        &self,
        request: Request<ConfirmCredentialInUseRequest>,
    ) -> Result<Response<ConfirmCredentialInUseResponse>, Status> {
        self.serve(
            "ConfirmCredentialInUse",
            request,
            |req, ctx, caller| async move {
                let rotation_type = validate::rotation_type(req.r#type)?;
                let rotation_id = validate::rotation_id(&req.rotation_id)?;
                let version = validate::version(req.version)?;
                let consumer = validate::consumer(&req.consumer)?;
                let id = rotation_id.to_string();
                // A consumer that may read its credential may say it uses it: the same
                // permission as GetGeneratedCredentials (docs/security.md).
                authz::authorize(
                    &caller,
                    "ConfirmCredentialInUse",
                    Action::ReadCredentials,
                    rotation_type,
                    Target::Id(&id),
                    &ctx,
                )?;
                record_rotation(rotation_type, &id);
                Ok(self
                    .engine
                    .confirm_credential_in_use(rotation_type, rotation_id, version, consumer, &ctx)
                    .await?)
            },
        )
        .await
    }
}
