//! The read routes under `/api/v2/secret-rotations`: options, list (all types or one), get by id,
//! get by name, generated credentials.

use axum::response::Response;
use serde_json::{Value, json};

use super::catalogue::{TYPES, TypeInfo, options_template};
use super::dispatch::{checked_rotation, permission_denied};
use super::http::{Ctx, json_response, required_query, zod_too_small};
use super::rotation::Rotation;
use super::state::App;
use super::{MSG_PLAN_READ, PROJECT_ID};

pub(super) fn options_route() -> Response {
    let mut options: Vec<Value> = TYPES
        .iter()
        .map(|ti| json!({ "name": ti.display, "type": ti.slug, "connection": ti.app, "template": options_template(ti) }))
        .collect();
    options.sort_by_key(|o| o["name"].as_str().unwrap_or_default().to_lowercase());
    json_response(200, &json!({ "secretRotationOptions": options }))
}

pub(super) fn list_route(app: &App, ctx: &Ctx, ti: Option<&TypeInfo>) -> Response {
    let mut issues = Vec::new();
    let project_id = required_query(ctx, "projectId", &mut issues);
    if !issues.is_empty() {
        return ctx.validation_failure(issues);
    }
    let st = app.st();
    if !st.cfg.plan_allows_rotation {
        return ctx.error(400, "BadRequest", MSG_PLAN_READ);
    }
    let rotations: Vec<Value> = st
        .rotations
        .iter()
        .filter(|r| r.project_id == project_id)
        .filter(|r| ti.is_none_or(|t| r.type_slug == t.slug))
        .filter(|r| st.type_supported(r.type_slug))
        .filter(|r| !st.is_denied(r.id, "read"))
        .map(Rotation::to_json)
        .collect();
    json_response(200, &json!({ "secretRotations": rotations }))
}

pub(super) fn get_route(app: &App, ctx: &Ctx, ti: &TypeInfo, rid: &str) -> Response {
    let st = app.st();
    match checked_rotation(&st, ctx, ti, rid, "read", MSG_PLAN_READ) {
        Ok(id) => match st.rotation(id) {
            Some(rot) => json_response(200, &json!({ "secretRotation": rot.to_json() })),
            None => ctx.something_went_wrong(),
        },
        Err(resp) => resp,
    }
}

/// Trimmed, trailing `/` removed (root stays `/`).
pub(super) fn normalize_secret_path(p: &str) -> String {
    let t = p.trim();
    let stripped = t.trim_end_matches('/');
    if stripped.is_empty() {
        "/".to_string()
    } else {
        stripped.to_string()
    }
}

pub(super) fn get_by_name_route(app: &App, ctx: &Ctx, ti: &TypeInfo, name: &str) -> Response {
    let mut issues = Vec::new();
    if name.trim().is_empty() {
        issues.push(zod_too_small(&["rotationName"], 1));
    }
    let project_id = required_query(ctx, "projectId", &mut issues);
    let secret_path = required_query(ctx, "secretPath", &mut issues);
    let environment = required_query(ctx, "environment", &mut issues);
    if !issues.is_empty() {
        return ctx.validation_failure(issues);
    }
    let secret_path = normalize_secret_path(&secret_path);
    let st = app.st();
    if !st.cfg.plan_allows_rotation {
        return ctx.error(400, "BadRequest", MSG_PLAN_READ);
    }
    let folder = st
        .folders
        .iter()
        .find(|f| project_id == PROJECT_ID && f.env_slug == environment && f.path == secret_path);
    let Some(folder) = folder else {
        return ctx.error(
            400,
            "BadRequest",
            format!("Could not find folder with path \"{secret_path}\" in environment \"{environment}\" for project with ID \"{project_id}\""),
        );
    };
    let rot = st
        .rotations
        .iter()
        .find(|r| r.folder.id == folder.id && r.name == name.trim());
    let Some(rot) = rot else {
        return ctx.error(
            404,
            "NotFound",
            format!(
                "Could not find {} Rotation with name \"{}\"",
                ti.display,
                name.trim()
            ),
        );
    };
    if st.is_denied(rot.id, "read") {
        return permission_denied(ctx, "read", rot);
    }
    if rot.connection.app != ti.app {
        return ctx.error(
            400,
            "BadRequest",
            format!(
                "Secret Rotation with ID \"{}\" is not configured for {}",
                rot.id, ti.display
            ),
        );
    }
    json_response(200, &json!({ "secretRotation": rot.to_json() }))
}

pub(super) fn generated_credentials_route(
    app: &App,
    ctx: &Ctx,
    ti: &TypeInfo,
    rid: &str,
) -> Response {
    let st = app.st();
    match checked_rotation(
        &st,
        ctx,
        ti,
        rid,
        "read-generated-credentials",
        MSG_PLAN_READ,
    ) {
        Ok(id) => match st.rotation(id) {
            Some(rot) => json_response(200, &rot.generated_credentials_body()),
            None => ctx.something_went_wrong(),
        },
        Err(resp) => resp,
    }
}
