//! Authentication (`infisical-api.md` §2): the bearer token check of the rotation routes, and
//! the Universal Auth login, token renew and token revoke routes.

use std::time::Instant;

use axum::response::Response;
use serde_json::json;
use uuid::Uuid;

use super::codec::now_ms;
use super::http::{Ctx, json_response, parse_body, parse_string_fields};
use super::state::App;
use super::tokens::{JwtCheck, Lockout};
use super::{
    CLIENT_ID, CLIENT_SECRET, MSG_INVALID_CREDENTIALS, MSG_LOCKED_OUT, MSG_NO_ACCESS_TOKEN,
    MSG_REVOKED_OK, MSG_TOKEN_BAD_ALGORITHM, MSG_TOKEN_BAD_SIGNATURE, MSG_TOKEN_EXPIRED,
    MSG_TOKEN_MALFORMED, MSG_TOKEN_MISSING,
};

/// `injectIdentity` + `verifyAuth` (`infisical-api.md` §2.4). Returns the token row on success.
pub(super) fn authenticate(app: &App, ctx: &Ctx) -> Result<Uuid, Response> {
    let header = ctx
        .headers
        .get("authorization")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let header = match header {
        Some(h) if !h.is_empty() => h,
        _ => return Err(ctx.error(401, "UnauthorizedError", MSG_TOKEN_MISSING)),
    };
    // The server drops the first 7 characters ("Bearer ") and treats the rest as the token.
    let token: String = header.chars().skip(7).collect();
    if token.starts_with("st.") {
        // A legacy service token: wrong auth mode for rotation routes.
        return Err(ctx.error(
            403,
            &format!("Forbidden access to {}", ctx.url),
            "You are not allowed to access this resource",
        ));
    }
    let st = app.st();
    let row_id = match st.check_jwt(&token, now_ms()) {
        JwtCheck::Valid(row) => row,
        failure => return Err(token_error(ctx, failure)),
    };
    match st.token_rows.get(&row_id) {
        Some(row) if !row.revoked => Ok(row_id),
        _ => Err(ctx.error(401, "UnauthorizedError", MSG_NO_ACCESS_TOKEN)),
    }
}

pub(super) fn token_error(ctx: &Ctx, check: JwtCheck) -> Response {
    let message = match check {
        JwtCheck::Expired => MSG_TOKEN_EXPIRED,
        JwtCheck::BadAlgorithm => MSG_TOKEN_BAD_ALGORITHM,
        JwtCheck::BadSignature => MSG_TOKEN_BAD_SIGNATURE,
        JwtCheck::Malformed | JwtCheck::Valid(_) => MSG_TOKEN_MALFORMED,
    };
    ctx.error(403, "TokenError", message)
}

pub(super) fn login_route(app: &App, ctx: &Ctx) -> Response {
    let Ok(body) = parse_body(ctx) else {
        return ctx.something_went_wrong();
    };
    let fields = match parse_string_fields(
        &body,
        &["clientId", "clientSecret"],
        &[("organizationSlug", 1, 64), ("subOrganizationName", 1, 64)],
    ) {
        Ok(f) => f,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let client_id = fields
        .get("clientId")
        .map(String::as_str)
        .unwrap_or_default();
    let client_secret = fields
        .get("clientSecret")
        .map(String::as_str)
        .unwrap_or_default();

    let mut st = app.st();
    if client_id != CLIENT_ID {
        return ctx.error(401, "UnauthorizedError", MSG_INVALID_CREDENTIALS);
    }
    let now = Instant::now();
    let lockout_enabled = st.cfg.lockout_enabled;
    if lockout_enabled && st.lockout_current(now).locked {
        return ctx.error(401, "UnauthorizedError", MSG_LOCKED_OUT);
    }
    if client_secret != CLIENT_SECRET {
        if lockout_enabled {
            st.register_failed_login(now);
        }
        return ctx.error(401, "UnauthorizedError", MSG_INVALID_CREDENTIALS);
    }
    st.lockout = Lockout::default();
    let now = now_ms();
    let row_id = st.create_token_row(now);
    let Some(row) = st.token_rows.get(&row_id).cloned() else {
        return ctx.something_went_wrong();
    };
    let lifetime = st.token_lifetime(&row);
    let token = st.issue_jwt(row_id, lifetime, now);
    json_response(200, &st.token_body(&token, &row))
}

pub(super) fn renew_route(app: &App, ctx: &Ctx) -> Response {
    let Ok(body) = parse_body(ctx) else {
        return ctx.something_went_wrong();
    };
    let fields = match parse_string_fields(&body, &["accessToken"], &[]) {
        Ok(f) => f,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let token = fields.get("accessToken").cloned().unwrap_or_default();
    let now = now_ms();
    let mut st = app.st();
    let row_id = match st.check_jwt(&token, now) {
        JwtCheck::Valid(row) => row,
        failure => return token_error(ctx, failure),
    };
    let Some(row) = st.token_rows.get(&row_id).cloned().filter(|r| !r.revoked) else {
        return ctx.error(401, "UnauthorizedError", MSG_NO_ACCESS_TOKEN);
    };
    let secs = |s: u64| chrono::Duration::seconds(s as i64);
    let lifetime = st.token_lifetime(&row);
    if lifetime > 0 && now > row.last_renewed_at.unwrap_or(row.created_at) + secs(lifetime) {
        return ctx.error(
            401,
            "UnauthorizedError",
            "Failed to renew MI access token due to TTL expiration",
        );
    }
    if row.period_secs == 0 && row.max_ttl_secs > 0 {
        let max_expiry = row.created_at + secs(row.max_ttl_secs);
        if now > max_expiry {
            return ctx.error(
                401,
                "UnauthorizedError",
                "Failed to renew MI access token due to Max TTL expiration",
            );
        }
        if now + secs(row.ttl_secs) > max_expiry {
            return ctx.error(
                401,
                "UnauthorizedError",
                "Failed to renew MI access token past its Max TTL expiration",
            );
        }
    }
    if let Some(r) = st.token_rows.get_mut(&row_id) {
        r.last_renewed_at = Some(now);
    }
    let new_token = st.issue_jwt(row_id, lifetime, now);
    json_response(200, &st.token_body(&new_token, &row))
}

pub(super) fn revoke_route(app: &App, ctx: &Ctx) -> Response {
    let Ok(body) = parse_body(ctx) else {
        return ctx.something_went_wrong();
    };
    let fields = match parse_string_fields(&body, &["accessToken"], &[]) {
        Ok(f) => f,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let token = fields.get("accessToken").cloned().unwrap_or_default();
    let mut st = app.st();
    let row_id = match st.check_jwt(&token, now_ms()) {
        JwtCheck::Valid(row) => row,
        failure => return token_error(ctx, failure),
    };
    match st.token_rows.get_mut(&row_id) {
        Some(row) if !row.revoked => {
            row.revoked = true;
            json_response(200, &json!({ "message": MSG_REVOKED_OK }))
        }
        _ => ctx.error(401, "UnauthorizedError", MSG_NO_ACCESS_TOKEN),
    }
}
