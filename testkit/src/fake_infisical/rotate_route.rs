//! `POST /{type}/{rotationId}/rotate-secrets` (`infisical-api.md` §7.3, `lifecycle.md` §4-§6): the
//! checks, the per-rotation lock, the provider work on a task of its own, an injected failure or
//! cut connection.

use std::time::Instant;

use axum::response::Response;
use serde_json::{Value, json};

use super::catalogue::TypeInfo;
use super::codec::now_ms;
use super::dispatch::checked_rotation;
use super::http::{Ctx, json_response, parse_body};
use super::state::{App, InflightLock};
use super::{MSG_IN_PROGRESS, MSG_PLAN_ROTATE};

/// What the rotation work decided.
pub(super) enum RotateOutcome {
    Success(Value),
    ProviderFailure(String),
    Vanished,
}

/// `POST /{type}/{rotationId}/rotate-secrets` (`infisical-api.md` §7.3, `lifecycle.md` §4–§6).
pub(super) async fn rotate_route(app: &App, ctx: &Ctx, ti: &TypeInfo, rid: &str) -> Response {
    // Fastify parses the body before validation: an empty JSON body is a 500 even with a bad id.
    if parse_body(ctx).is_err() {
        return ctx.something_went_wrong();
    }
    // Checks, the in-progress test and taking the lock happen atomically under the state mutex.
    let (id, lock_token, failure, cut_after, latency) = {
        let mut st = app.st();
        let id = match checked_rotation(&st, ctx, ti, rid, "rotate-secrets", MSG_PLAN_ROTATE) {
            Ok(id) => id,
            Err(resp) => return resp,
        };
        let now = Instant::now();
        if st.lock_held(id, now) {
            return ctx.error(400, "BadRequest", MSG_IN_PROGRESS);
        }
        st.next_lock_token += 1;
        let lock_token = st.next_lock_token;
        st.inflight.insert(
            id,
            InflightLock {
                token: lock_token,
                taken_at: now,
            },
        );
        let failure = st.fail_next.remove(&id);
        let cut_after = st.drop_after_apply.remove(&id);
        (id, lock_token, failure, cut_after, st.cfg.rotate_latency)
    };

    // The provider work runs in its own task, so it completes (and releases the lock) even when the
    // client gives up and the connection goes away, as upstream's would.
    let worker_app = app.clone();
    let work = tokio::spawn(async move {
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let mut st = worker_app.st();
        let now = now_ms();
        let outcome = match st.rotation_mut(id) {
            None => RotateOutcome::Vanished,
            Some(rot) => match &failure {
                Some(detail) => {
                    RotateOutcome::ProviderFailure(rot.apply_failed_rotation(detail, now))
                }
                None => {
                    rot.apply_successful_rotation(now);
                    RotateOutcome::Success(rot.to_json())
                }
            },
        };
        if st.inflight.get(&id).is_some_and(|l| l.token == lock_token) {
            st.inflight.remove(&id);
        }
        outcome
    });
    let outcome = work.await;

    if cut_after {
        ctx.conn.handle.cut();
    }
    match outcome {
        Ok(RotateOutcome::Success(obj)) => json_response(200, &json!({ "secretRotation": obj })),
        Ok(RotateOutcome::ProviderFailure(message)) => {
            ctx.error(500, "InternalServerError", message)
        }
        Ok(RotateOutcome::Vanished) => ctx.error(
            404,
            "NotFound",
            format!("Could not find {} Rotation with ID \"{rid}\"", ti.display),
        ),
        Err(_) => ctx.something_went_wrong(),
    }
}
