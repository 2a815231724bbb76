//! Access tokens, the Universal Auth lockout and the rate-limit buckets: token rows and the
//! JWT-shaped strings issued for them, `jwt.verify` as the server runs it, lockout counting.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use super::IDENTITY_ID;
use super::codec::{b64url_decode, b64url_encode};
use super::state::State;

/// A row of `identity_access_tokens`.
#[derive(Clone, Debug)]
pub(super) struct TokenRow {
    pub(super) created_at: DateTime<Utc>,
    pub(super) last_renewed_at: Option<DateTime<Utc>>,
    pub(super) ttl_secs: u64,
    pub(super) max_ttl_secs: u64,
    pub(super) period_secs: u64,
    pub(super) revoked: bool,
}

/// One signed JWT handed out for a token row (login or renew).
#[derive(Clone, Debug)]
pub(super) struct IssuedJwt {
    pub(super) row: Uuid,
    pub(super) exp: Option<DateTime<Utc>>,
    pub(super) force_expired: bool,
}

pub(super) enum JwtCheck {
    Valid(Uuid),
    Expired,
    Malformed,
    BadAlgorithm,
    BadSignature,
}

#[derive(Default, Debug)]
pub(super) struct Lockout {
    pub(super) failed_attempts: u32,
    pub(super) locked: bool,
    /// When the keystore item expires (counter reset window, or the lockout duration).
    pub(super) expires_at: Option<Instant>,
}

#[derive(Default, Debug)]
pub(super) struct Bucket {
    pub(super) window_start: Option<Instant>,
    pub(super) count: u32,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct RateInfo {
    pub(super) limit: u32,
    pub(super) remaining: u32,
    pub(super) reset_secs: u64,
    pub(super) exceeded: bool,
}

impl Bucket {
    /// Fixed window like `@fastify/rate-limit`'s store: every request counts, over the limit is 429.
    pub(super) fn hit(&mut self, limit: u32, window: Duration, now: Instant) -> RateInfo {
        let expired = self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= window);
        if expired {
            self.window_start = Some(now);
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        let elapsed = self
            .window_start
            .map(|s| now.duration_since(s))
            .unwrap_or_default();
        let ttl = window.saturating_sub(elapsed);
        RateInfo {
            limit,
            remaining: limit.saturating_sub(self.count),
            reset_secs: ttl.as_millis().div_ceil(1000) as u64,
            exceeded: self.count > limit,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum RateClass {
    Exempt,
    Read,
    Write,
}

impl State {
    pub(super) fn create_token_row(&mut self, now: DateTime<Utc>) -> Uuid {
        let id = Uuid::new_v4();
        self.token_rows.insert(
            id,
            TokenRow {
                created_at: now,
                last_renewed_at: None,
                ttl_secs: self.cfg.access_token_ttl_secs,
                max_ttl_secs: self.cfg.access_token_max_ttl_secs,
                period_secs: self.cfg.access_token_period_secs,
                revoked: false,
            },
        );
        id
    }

    /// Sign a new JWT-shaped token for a row. `lifetime_secs` 0 = no `exp`.
    pub(super) fn issue_jwt(
        &mut self,
        row: Uuid,
        lifetime_secs: u64,
        now: DateTime<Utc>,
    ) -> String {
        let exp =
            (lifetime_secs > 0).then(|| now + chrono::Duration::seconds(lifetime_secs as i64));
        let mut payload = json!({
            "identityId": IDENTITY_ID,
            "identityAccessTokenId": row.to_string(),
            "authTokenType": "identityAccessToken",
            "iat": now.timestamp(),
        });
        if let (Some(e), Some(obj)) = (exp, payload.as_object_mut()) {
            obj.insert("exp".into(), json!(e.timestamp()));
        }
        let mut sig = [0u8; 32];
        rand::rng().fill(&mut sig[..]);
        let token = format!(
            "{}.{}.{}",
            b64url_encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64url_encode(payload.to_string().as_bytes()),
            b64url_encode(&sig)
        );
        self.jwts.insert(
            token.clone(),
            IssuedJwt {
                row,
                exp,
                force_expired: false,
            },
        );
        token
    }

    /// `jwt.verify` as the server runs it: unknown strings are malformed / wrong algorithm / bad
    /// signature; known ones can be expired.
    pub(super) fn check_jwt(&self, token: &str, now: DateTime<Utc>) -> JwtCheck {
        if let Some(j) = self.jwts.get(token) {
            if j.force_expired || j.exp.is_some_and(|e| now >= e) {
                return JwtCheck::Expired;
            }
            return JwtCheck::Valid(j.row);
        }
        let parts: Vec<&str> = token.split('.').collect();
        if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
            return JwtCheck::Malformed;
        }
        let header = b64url_decode(parts[0]).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        let payload =
            b64url_decode(parts[1]).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
        match (header, payload) {
            (Some(h), Some(_)) if h.is_object() => {
                if h.get("alg").and_then(Value::as_str) != Some("HS256") {
                    JwtCheck::BadAlgorithm
                } else {
                    JwtCheck::BadSignature
                }
            }
            _ => JwtCheck::Malformed,
        }
    }

    pub(super) fn token_lifetime(&self, row: &TokenRow) -> u64 {
        if row.period_secs > 0 {
            row.period_secs
        } else {
            row.ttl_secs
        }
    }

    pub(super) fn token_body(&self, token: &str, row: &TokenRow) -> Value {
        let max_ttl = if row.period_secs > 0 {
            1_000_000_000
        } else {
            row.max_ttl_secs
        };
        json!({
            "accessToken": token,
            "expiresIn": self.token_lifetime(row),
            "accessTokenMaxTTL": max_ttl,
            "tokenType": "Bearer",
        })
    }

    pub(super) fn lockout_current(&mut self, now: Instant) -> &mut Lockout {
        if self.lockout.expires_at.is_some_and(|e| now >= e) {
            self.lockout = Lockout::default();
        }
        &mut self.lockout
    }

    pub(super) fn register_failed_login(&mut self, now: Instant) {
        let (threshold, reset, duration) = (
            self.cfg.lockout_threshold,
            self.cfg.lockout_counter_reset,
            self.cfg.lockout_duration,
        );
        let l = self.lockout_current(now);
        l.failed_attempts += 1;
        if l.failed_attempts >= threshold {
            l.locked = true;
            l.expires_at = Some(now + duration);
        } else {
            l.expires_at = Some(now + reset);
        }
    }
}
