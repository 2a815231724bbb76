//! Request dispatch, in the pipeline order of the module doc: the route table, counters and
//! recorded requests, one-shot injections, rate limiting, and the checks every per-rotation route
//! makes (validation, plan, existence, permission, type).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use axum::extract::{ConnectInfo, Query, Request, State as AxumState};
use axum::http::{Method, Uri};
use axum::response::Response;
use serde_json::json;
use uuid::Uuid;

use super::auth_routes::{authenticate, login_route, renew_route, revoke_route};
use super::catalogue::{TypeInfo, type_info};
use super::codec::{iso, now_ms, percent_decode};
use super::connection::ConnInfo;
use super::http::{
    Ctx, add_header, fastify_not_found, is_zod_uuid, json_response, new_req_id, with_rate_headers,
    zod_invalid_uuid,
};
use super::read_routes::{
    generated_credentials_route, get_by_name_route, get_route, list_route, options_route,
};
use super::rotate_route::rotate_route;
use super::rotation::Rotation;
use super::secret_routes::{list_secrets_route, update_secrets_route};
use super::state::{App, State};
use super::tokens::{RateClass, RateInfo};
use super::{MAX_RECORDED_REQUESTS, RecordedRequest, Route};

/// A matched route with its path parameters.
pub(super) enum Matched {
    Status,
    Login,
    Renew,
    Revoke,
    Options,
    ListAll,
    ListType(&'static TypeInfo),
    Get(&'static TypeInfo, String),
    GetByName(&'static TypeInfo, String),
    GeneratedCredentials(&'static TypeInfo, String),
    Rotate(&'static TypeInfo, String),
    SecretsList,
    SecretsBatchUpdate,
}

impl Matched {
    pub(super) fn route(&self) -> Option<Route> {
        Some(match self {
            Matched::Status => return None,
            Matched::Login => Route::Login,
            Matched::Renew => Route::Renew,
            Matched::Revoke => Route::Revoke,
            Matched::Options => Route::Options,
            Matched::ListAll | Matched::ListType(_) => Route::List,
            Matched::Get(..) => Route::Get,
            Matched::GetByName(..) => Route::GetByName,
            Matched::GeneratedCredentials(..) => Route::GeneratedCredentials,
            Matched::Rotate(..) => Route::Rotate,
            Matched::SecretsList => Route::SecretsList,
            Matched::SecretsBatchUpdate => Route::SecretsBatchUpdate,
        })
    }

    pub(super) fn rate_class(&self) -> RateClass {
        match self {
            Matched::Status => RateClass::Exempt,
            Matched::Login
            | Matched::Renew
            | Matched::Revoke
            | Matched::Rotate(..)
            | Matched::SecretsBatchUpdate => RateClass::Write,
            _ => RateClass::Read,
        }
    }
}

/// Path segments after `/api/v2/secret-rotations`, if the path is under it.
pub(super) fn rotation_route_segments(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix("/api/v2/secret-rotations")?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    Some(rest.strip_prefix('/')?.split('/').collect())
}

/// Route table. Only supported `{type}` values match; everything else is Fastify's 404.
pub(super) fn match_route(method: &Method, path: &str, supported: &[String]) -> Option<Matched> {
    let method = method.as_str();
    match (method, path) {
        ("GET", "/api/status") => return Some(Matched::Status),
        ("POST", "/api/v1/auth/universal-auth/login") => return Some(Matched::Login),
        ("POST", "/api/v1/auth/token/renew") => return Some(Matched::Renew),
        ("POST", "/api/v1/auth/token/revoke") => return Some(Matched::Revoke),
        ("GET", "/api/v4/secrets") => return Some(Matched::SecretsList),
        ("PATCH", "/api/v4/secrets/batch") => return Some(Matched::SecretsBatchUpdate),
        _ => {}
    }
    let segs = rotation_route_segments(path)?;
    let known = |t: &str| type_info(t).filter(|ti| supported.iter().any(|s| s == ti.slug));
    let id = |s: &str| percent_decode(s);
    match (method, segs.as_slice()) {
        ("GET", []) => Some(Matched::ListAll),
        ("GET", ["options"]) => Some(Matched::Options),
        ("GET", [t]) => known(t).map(Matched::ListType),
        ("GET", [t, "rotation-name", name]) => known(t).map(|ti| Matched::GetByName(ti, id(name))),
        ("GET", [t, rid]) => known(t).map(|ti| Matched::Get(ti, id(rid))),
        ("GET", [t, rid, "generated-credentials"]) => {
            known(t).map(|ti| Matched::GeneratedCredentials(ti, id(rid)))
        }
        ("POST", [t, rid, "rotate-secrets"]) => known(t).map(|ti| Matched::Rotate(ti, id(rid))),
        _ => None,
    }
}

/// Entry point for every request.
pub(super) async fn dispatch(
    AxumState(app): AxumState<App>,
    ConnectInfo(conn): ConnectInfo<ConnInfo>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let url = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let headers_vec: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();

    let (matched, req_id, injection) = {
        let mut st = app.st();
        record_request(&mut st, &parts.method, &path, &url, &headers_vec);
        let req_id = match parts
            .headers
            .get("request-id")
            .and_then(|v| v.to_str().ok())
        {
            Some(v) if st.cfg.adopt_request_id_header && !v.is_empty() => v.to_string(),
            _ => new_req_id(),
        };
        let matched = match_route(&parts.method, &path, &st.cfg.supported_types);
        let injection = matched
            .as_ref()
            .and_then(Matched::route)
            .and_then(|r| st.injections.get_mut(&r).and_then(VecDeque::pop_front));
        (matched, req_id, injection)
    };

    let Some(matched) = matched else {
        return fastify_not_found(&parts.method, &url);
    };
    if let Some(inj) = injection {
        let mut resp = json_response(inj.status, &inj.body);
        for (k, v) in &inj.headers {
            add_header(&mut resp, k, v);
        }
        return resp;
    }

    let ctx = Ctx {
        method: parts.method.clone(),
        url,
        query: parse_query(&parts.uri),
        headers: parts.headers,
        body,
        req_id,
        conn,
    };
    match matched {
        Matched::Status => status_route(),
        Matched::Login | Matched::Renew | Matched::Revoke => {
            let rate = match rate_limit(&app, &ctx, matched.rate_class()) {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let resp = match matched {
                Matched::Login => login_route(&app, &ctx),
                Matched::Renew => renew_route(&app, &ctx),
                _ => revoke_route(&app, &ctx),
            };
            with_rate_headers(resp, rate)
        }
        _ => resource_route(app, ctx, matched).await,
    }
}

/// Counters and header recording, before anything can fail.
pub(super) fn record_request(
    st: &mut State,
    method: &Method,
    path: &str,
    url: &str,
    headers: &[(String, String)],
) {
    if st.requests.len() >= MAX_RECORDED_REQUESTS {
        st.requests.pop_front();
    }
    st.requests.push_back(RecordedRequest {
        method: method.to_string(),
        url: url.to_string(),
        headers: headers.to_vec(),
    });
    if path.starts_with("/api/v2/") || path.starts_with("/api/v4/") {
        st.last_resource_headers = headers.to_vec();
    }
    match (method.as_str(), path) {
        ("POST", "/api/v1/auth/universal-auth/login") => st.login_calls += 1,
        ("POST", "/api/v1/auth/token/renew") => st.renew_calls += 1,
        ("POST", _) => {
            // Any rotate-secrets POST counts, whatever its type (even an unsupported one).
            let segs = rotation_route_segments(path).unwrap_or_default();
            if let [_, rid, "rotate-secrets"] = segs.as_slice() {
                st.total_rotate_calls += 1;
                let rid = percent_decode(rid);
                let id = Some(rid.as_str())
                    .filter(|r| is_zod_uuid(r))
                    .and_then(|r| Uuid::parse_str(r).ok());
                if let Some(id) = id {
                    *st.rotate_calls.entry(id).or_default() += 1;
                }
            }
        }
        _ => {}
    }
}

pub(super) fn parse_query(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

/// Rate limiting (Cloud mode only). Ok(None) when not enforced for this route.
pub(super) fn rate_limit(
    app: &App,
    ctx: &Ctx,
    class: RateClass,
) -> Result<Option<RateInfo>, Response> {
    let mut st = app.st();
    if !st.cfg.rate_limit_cloud {
        return Ok(None);
    }
    let (limit, window) = match class {
        RateClass::Exempt => return Ok(None),
        RateClass::Write => (st.cfg.write_limit_per_minute, st.cfg.rate_limit_window),
        RateClass::Read => (st.cfg.read_limit_per_minute, st.cfg.rate_limit_window),
    };
    if limit == 0 {
        return Ok(None);
    }
    let now = Instant::now();
    let info = match class {
        RateClass::Write => st.write_bucket.hit(limit, window, now),
        _ => st.read_bucket.hit(limit, window, now),
    };
    if !info.exceeded {
        return Ok(Some(info));
    }
    let wait = info.reset_secs.max(1);
    let mut resp = ctx.error(
        429,
        "RateLimitExceeded",
        format!("Rate limit exceeded. Please try again in {wait} seconds"),
    );
    add_header(&mut resp, "retry-after", &wait.to_string());
    Err(with_rate_headers(resp, Some(info)))
}

pub(super) fn status_route() -> Response {
    json_response(
        200,
        &json!({
            "date": iso(now_ms()),
            "message": "Ok",
            "emailConfigured": false,
            "inviteOnlySignup": false,
            "redisConfigured": true,
            "secretScanningConfigured": false,
            "samlDefaultOrgSlug": null,
            "auditLogStorageDisabled": false,
        }),
    )
}

/// Authenticated routes under `/api/v2/secret-rotations`.
pub(super) async fn resource_route(app: App, ctx: Ctx, matched: Matched) -> Response {
    if let Err(resp) = authenticate(&app, &ctx) {
        return resp;
    }
    let rate = match rate_limit(&app, &ctx, matched.rate_class()) {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let resp = match &matched {
        Matched::Options => options_route(),
        Matched::ListAll => list_route(&app, &ctx, None),
        Matched::ListType(ti) => list_route(&app, &ctx, Some(ti)),
        Matched::Get(ti, rid) => get_route(&app, &ctx, ti, rid),
        Matched::GetByName(ti, name) => get_by_name_route(&app, &ctx, ti, name),
        Matched::GeneratedCredentials(ti, rid) => generated_credentials_route(&app, &ctx, ti, rid),
        Matched::Rotate(ti, rid) => rotate_route(&app, &ctx, ti, rid).await,
        Matched::SecretsList => list_secrets_route(&app, &ctx),
        Matched::SecretsBatchUpdate => update_secrets_route(&app, &ctx),
        _ => fastify_not_found(&ctx.method, &ctx.url),
    };
    with_rate_headers(resp, rate)
}

/// 403 PermissionDenied with the caller's (inverted) rule for that action as `details`.
pub(super) fn permission_denied(ctx: &Ctx, action: &str, rot: &Rotation) -> Response {
    ctx.error_with_details(
        403,
        "PermissionDenied",
        format!("You are not allowed to {action} on secret-rotation"),
        json!([{
            "action": action,
            "inverted": true,
            "subject": "secret-rotation",
            "conditions": {
                "environment": { "$eq": rot.environment.slug },
                "secretPath": { "$glob": rot.folder.path },
                "connectionId": { "$eq": rot.connection.id.to_string() },
            },
        }]),
    )
}

/// The checks common to the per-id routes, in order (`infisical-api.md` §7.2):
/// 422 (non-UUID) -> plan (400) -> existence (404) -> permission (403) -> type/app match (400).
pub(super) fn checked_rotation(
    st: &State,
    ctx: &Ctx,
    ti: &TypeInfo,
    rid: &str,
    action: &str,
    plan_msg: &str,
) -> Result<Uuid, Response> {
    if !is_zod_uuid(rid) {
        return Err(ctx.validation_failure(vec![zod_invalid_uuid(&["rotationId"])]));
    }
    if !st.cfg.plan_allows_rotation {
        return Err(ctx.error(400, "BadRequest", plan_msg));
    }
    let rot = Uuid::parse_str(rid).ok().and_then(|id| st.rotation(id));
    let Some(rot) = rot else {
        return Err(ctx.error(
            404,
            "NotFound",
            format!("Could not find {} Rotation with ID \"{rid}\"", ti.display),
        ));
    };
    if st.is_denied(rot.id, action) {
        return Err(permission_denied(ctx, action, rot));
    }
    if rot.connection.app != ti.app {
        return Err(ctx.error(
            400,
            "BadRequest",
            format!(
                "Secret Rotation with ID \"{}\" is not configured for {}",
                rot.id, ti.display
            ),
        ));
    }
    Ok(rot.id)
}
