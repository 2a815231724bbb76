//! Failure injection on [`FakeInfisical`](super::FakeInfisical): one-shot canned responses, provider
//! failures, connections cut after the work, held rotation locks, denied permissions, expired
//! and revoked tokens, a slower provider, a plan without rotation.

use std::time::Duration;

use serde_json::Value;
use uuid::Uuid;

use super::tokens::Lockout;
use super::{FakeInfisical, Route};

/// A canned response queued by [`FakeInfisical::inject_next`], answered instead of the route.
#[derive(Clone, Debug)]
pub(super) struct Injection {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) headers: Vec<(String, String)>,
}

impl FakeInfisical {
    /// Every token issued so far now fails with 403 TokenError `Your token has expired...`.
    /// Tokens issued afterwards are fine.
    pub fn expire_all_tokens(&self) {
        for j in self.shared.st().jwts.values_mut() {
            j.force_expired = true;
        }
    }

    /// Every token issued so far now fails with 401 `No identity access token found`.
    pub fn revoke_all_tokens(&self) {
        for row in self.shared.st().token_rows.values_mut() {
            row.revoked = true;
        }
    }

    /// Clear the Universal Auth lockout state (failure counter and lock).
    pub fn reset_lockout(&self) {
        self.shared.st().lockout = Lockout::default();
    }

    /// The next rotate-secrets on `id` that gets past the checks and the lock fails at the provider:
    /// 500 InternalServerError with the prefixed message, row marked failed (`lifecycle.md` §5).
    pub fn fail_next_rotation(&self, id: Uuid, provider_detail: &str) {
        self.shared
            .st()
            .fail_next
            .insert(id, provider_detail.to_string());
    }

    /// One-shot canned response for the next request on `route` (it still counts as a call).
    pub fn inject_next(
        &self,
        route: Route,
        status: u16,
        body: Value,
        headers: Vec<(String, String)>,
    ) {
        self.shared
            .st()
            .injections
            .entry(route)
            .or_default()
            .push_back(Injection {
                status,
                body,
                headers,
            });
    }

    /// The next `n` batch writes of secrets answer 503 `ServiceUnavailable` without writing.
    pub fn fail_next_secret_writes(&self, n: usize) {
        for _ in 0..n {
            self.inject_next(
                Route::SecretsBatchUpdate,
                503,
                serde_json::json!({
                    "reqId": super::http::new_req_id(),
                    "statusCode": 503,
                    "error": "ServiceUnavailable",
                    "message": "The server is temporarily unavailable",
                }),
                Vec::new(),
            );
        }
    }

    pub fn set_rotate_latency(&self, d: Duration) {
        self.shared.st().cfg.rotate_latency = d;
    }

    pub fn set_plan_allows_rotation(&self, allowed: bool) {
        self.shared.st().cfg.plan_allows_rotation = allowed;
    }

    /// The next rotate-secrets on `id` applies the rotation, then the connection is cut without any
    /// response bytes (the client sees the connection close before a status line).
    pub fn drop_connection_after_apply(&self, id: Uuid) {
        self.shared.st().drop_after_apply.insert(id);
    }

    /// Simulate another rotation holding `secret-rotation-v2-mutex-<id>`.
    pub fn set_lock_held(&self, id: Uuid, held: bool) {
        let mut st = self.shared.st();
        if held {
            st.simulated_locks.insert(id);
        } else {
            st.simulated_locks.remove(&id);
        }
    }

    /// Deny one permission action on `id`: "rotate-secrets", "read" or "read-generated-credentials".
    pub fn deny_permission(&self, id: Uuid, action: &str) {
        self.shared
            .st()
            .denied
            .entry(id)
            .or_default()
            .insert(action.to_string());
    }

    pub fn allow_permission(&self, id: Uuid, action: &str) {
        if let Some(set) = self.shared.st().denied.get_mut(&id) {
            set.remove(action);
        }
    }
}
