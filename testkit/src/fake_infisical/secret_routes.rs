//! The secrets routes of Infisical's public API (v4) that a client writing secrets uses,
//! built from Infisical's API reference ("List secrets", "Update many secrets"):
//!
//! - `GET /api/v4/secrets?projectId&environment&secretPath&viewSecretValue` → `{secrets, imports}`;
//!   a folder that does not exist lists nothing.
//! - `PATCH /api/v4/secrets/batch` `{projectId, environment, secretPath, mode, secrets: [{secretKey,
//!   secretValue?, secretComment?, secretMetadata?, skipMultilineEncoding?, ...}]}` → `{secrets}`;
//!   `mode` is `failOnNotFound` (default: 404 `Secret does not exist: K in path P`), `ignore`
//!   (missing keys skipped) or `upsert` (missing keys created with version 1). Every change adds
//!   one version. Values are trimmed as Infisical trims them; a secret managed by an Infisical
//!   rotation keeps its value.
//!
//! Both: 404 `NotFound` for an unknown project (`Project with ID '…' not found`), an unknown
//! environment (`Environment with slug '…' in project with ID '…' not found`), and, for the
//! update, a missing folder.

use axum::response::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use super::PROJECT_ID;
use super::codec::{iso, now_ms};
use super::http::{Ctx, ParsedBody, json_response, parse_body, zod_required, zod_wrong_type};
use super::read_routes::normalize_secret_path;
use super::state::{App, State};

/// One secret of the fake's store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeSecret {
    /// Infisical's id of the secret.
    pub id: String,
    /// The environment's slug.
    pub environment: String,
    /// The folder's path.
    pub secret_path: String,
    /// The key.
    pub key: String,
    /// The current value.
    pub value: String,
    /// 1 when created, one more per change.
    pub version: u64,
    /// Every value it had, oldest first (`history.len() == version`).
    pub history: Vec<String>,
    /// Its metadata, `(key, value)` (unencrypted entries only).
    pub metadata: Vec<(String, String)>,
    /// The comment.
    pub comment: String,
    /// Managed by an Infisical secret rotation: value writes are ignored.
    pub is_rotated: bool,
}

impl FakeSecret {
    fn to_json(&self, with_value: bool) -> Value {
        let at = iso(now_ms());
        json!({
            "id": self.id,
            "_id": self.id,
            "workspace": PROJECT_ID,
            "environment": self.environment,
            "version": self.version,
            "type": "shared",
            "secretKey": self.key,
            "secretValue": if with_value { self.value.as_str() } else { "<hidden-by-infisical>" },
            "secretValueHidden": !with_value,
            "secretComment": self.comment,
            "secretPath": self.secret_path,
            "createdAt": at,
            "updatedAt": at,
            "skipMultilineEncoding": false,
            "isRotatedSecret": self.is_rotated,
            "rotationId": Value::Null,
            "secretMetadata": self.metadata.iter()
                .map(|(k, v)| json!({ "key": k, "value": v, "isEncrypted": false }))
                .collect::<Vec<_>>(),
            "tags": [],
        })
    }
}

/// Infisical's trim of a written value: trailing newline kept, other outer space removed.
fn trim_value(v: &str) -> String {
    if v.ends_with('\n') {
        format!("{}\n", v.trim())
    } else {
        v.trim().to_owned()
    }
}

/// 404 for an unknown project or environment.
fn checked_scope(st: &State, ctx: &Ctx, project_id: &str, environment: &str) -> Option<Response> {
    if project_id != PROJECT_ID {
        return Some(ctx.error(
            404,
            "NotFound",
            format!("Project with ID '{project_id}' not found"),
        ));
    }
    if !st.environments.iter().any(|e| e.slug == environment) {
        return Some(ctx.error(
            404,
            "NotFound",
            format!(
                "Environment with slug '{environment}' in project with ID '{project_id}' not found"
            ),
        ));
    }
    None
}

pub(super) fn list_secrets_route(app: &App, ctx: &Ctx) -> Response {
    let (Some(project_id), Some(environment)) =
        (ctx.query_param("projectId"), ctx.query_param("environment"))
    else {
        return ctx.error(400, "BadRequest", "Missing project id or environment");
    };
    let path = normalize_secret_path(ctx.query_param("secretPath").unwrap_or("/"));
    let with_value = ctx.query_param("viewSecretValue") != Some("false");
    let st = app.st();
    if let Some(resp) = checked_scope(&st, ctx, project_id.trim(), environment.trim()) {
        return resp;
    }
    let secrets: Vec<Value> = st
        .secrets
        .iter()
        .filter(|s| s.environment == environment.trim() && s.secret_path == path)
        .map(|s| s.to_json(with_value))
        .collect();
    json_response(200, &json!({ "secrets": secrets, "imports": [] }))
}

/// One entry of the update's `secrets` array.
#[derive(Clone)]
pub(super) struct Update {
    key: String,
    value: Option<String>,
    comment: Option<String>,
    metadata: Option<Vec<(String, String)>>,
}

/// A validated update body.
#[derive(Clone)]
pub(super) struct Batch {
    environment: String,
    path: String,
    mode: String,
    updates: Vec<Update>,
}

/// The project id and the batch of a valid body.
fn parse_update(body: &Value) -> Result<(String, Batch), Vec<Value>> {
    let mut issues = Vec::new();
    let Value::Object(obj) = body else {
        return Err(vec![zod_wrong_type(&[], "object", body)]);
    };
    let string = |key: &'static str, issues: &mut Vec<Value>| match obj.get(key) {
        None => {
            issues.push(zod_required(&[key], "string"));
            String::new()
        }
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(other) => {
            issues.push(zod_wrong_type(&[key], "string", other));
            String::new()
        }
    };
    let project_id = string("projectId", &mut issues);
    let environment = string("environment", &mut issues);
    let path = match obj.get("secretPath") {
        Some(Value::String(s)) => normalize_secret_path(s),
        None => "/".to_owned(),
        Some(other) => {
            issues.push(zod_wrong_type(&["secretPath"], "string", other));
            String::new()
        }
    };
    let mode = match obj.get("mode") {
        None => "failOnNotFound".to_owned(),
        Some(Value::String(m)) if ["failOnNotFound", "upsert", "ignore"].contains(&m.as_str()) => {
            m.clone()
        }
        Some(_) => {
            issues.push(json!({
                "code": "invalid_enum_value", "path": ["mode"],
                "options": ["ignore", "upsert", "failOnNotFound"],
                "message": "Invalid enum value. Expected 'ignore' | 'upsert' | 'failOnNotFound'",
            }));
            String::new()
        }
    };
    let mut updates = Vec::new();
    match obj.get("secrets") {
        Some(Value::Array(items)) if !items.is_empty() => {
            for item in items {
                let key = item.get("secretKey").and_then(Value::as_str).map(str::trim);
                let Some(key) = key.filter(|k| !k.is_empty() && !k.contains(' ')) else {
                    issues.push(zod_required(&["secrets", "secretKey"], "string"));
                    continue;
                };
                let metadata =
                    item.get("secretMetadata")
                        .and_then(Value::as_array)
                        .map(|entries| {
                            entries
                                .iter()
                                .filter(|m| m.get("isEncrypted") != Some(&Value::Bool(true)))
                                .filter_map(|m| {
                                    Some((
                                        m.get("key")?.as_str()?.trim().to_owned(),
                                        m.get("value")
                                            .and_then(Value::as_str)
                                            .unwrap_or("")
                                            .trim()
                                            .to_owned(),
                                    ))
                                })
                                .collect()
                        });
                updates.push(Update {
                    key: key.to_owned(),
                    value: item
                        .get("secretValue")
                        .and_then(Value::as_str)
                        .map(trim_value),
                    comment: item
                        .get("secretComment")
                        .and_then(Value::as_str)
                        .map(|c| c.trim().to_owned()),
                    metadata,
                });
            }
        }
        Some(Value::Array(_)) => issues.push(json!({
            "code": "too_small", "minimum": 1, "type": "array", "inclusive": true, "exact": false,
            "message": "Array must contain at least 1 element(s)", "path": ["secrets"],
        })),
        None => issues.push(zod_required(&["secrets"], "array")),
        Some(other) => issues.push(zod_wrong_type(&["secrets"], "array", other)),
    }
    if issues.is_empty() {
        Ok((
            project_id,
            Batch {
                environment,
                path,
                mode,
                updates,
            },
        ))
    } else {
        Err(issues)
    }
}

pub(super) fn update_secrets_route(app: &App, ctx: &Ctx) -> Response {
    let body = match parse_body(ctx) {
        Ok(ParsedBody::Json(v)) => v,
        Ok(_) => return ctx.validation_failure(vec![zod_required(&[], "object")]),
        Err(()) => return ctx.something_went_wrong(),
    };
    let (project_id, batch) = match parse_update(&body) {
        Ok(parsed) => parsed,
        Err(issues) => return ctx.validation_failure(issues),
    };
    let (environment, path) = (batch.environment.clone(), batch.path.clone());
    let mut st = app.st();
    if let Some(resp) = checked_scope(&st, ctx, &project_id, &environment) {
        return resp;
    }
    if !st
        .folders
        .iter()
        .any(|f| f.env_slug == environment && f.path == path)
    {
        return ctx.error(
            404,
            "NotFound",
            format!("Folder with path '{path}' in environment with slug '{environment}' not found"),
        );
    }
    if st
        .approval_paths
        .iter()
        .any(|(e, p)| *e == environment && *p == path)
    {
        // A change policy: the write becomes an approval request, applied when approved.
        let id = Uuid::new_v4().to_string();
        st.pending_approvals.push((id.clone(), batch));
        return json_response(
            200,
            &json!({ "approval": { "id": id, "slug": format!("approval-{}", &id[..8]),
                "status": "open", "hasMerged": false, "policyId": Uuid::new_v4().to_string() } }),
        );
    }
    match apply_batch(&mut st, batch) {
        Ok(written) => json_response(200, &json!({ "secrets": written })),
        Err(message) => ctx.error(404, "NotFound", message),
    }
}

/// Applies a validated batch whose folder exists: the written secrets, or the not-found message.
pub(super) fn apply_batch(st: &mut State, batch: Batch) -> Result<Vec<Value>, String> {
    let Batch {
        environment,
        path,
        mode,
        updates,
    } = batch;
    let exists = |st: &State, key: &str| {
        st.secrets
            .iter()
            .any(|s| s.environment == environment && s.secret_path == path && s.key == key)
    };
    let missing: Vec<&str> = updates
        .iter()
        .filter(|u| !exists(st, &u.key))
        .map(|u| u.key.as_str())
        .collect();
    if mode == "failOnNotFound" && !missing.is_empty() {
        return Err(format!(
            "Secret does not exist: {} in path {path}",
            missing.join(", ")
        ));
    }
    let mut written = Vec::new();
    for update in updates {
        let position = st.secrets.iter().position(|s| {
            s.environment == environment && s.secret_path == path && s.key == update.key
        });
        let secret = match position {
            Some(i) => {
                let secret = &mut st.secrets[i];
                if let Some(value) = update.value.filter(|_| !secret.is_rotated) {
                    secret.value = value;
                }
                if let Some(comment) = update.comment {
                    secret.comment = comment;
                }
                if let Some(metadata) = update.metadata {
                    secret.metadata = metadata;
                }
                secret.version += 1;
                secret.history.push(secret.value.clone());
                secret.clone()
            }
            None if mode == "upsert" => {
                let value = update.value.unwrap_or_default();
                let secret = FakeSecret {
                    id: Uuid::new_v4().to_string(),
                    environment: environment.clone(),
                    secret_path: path.clone(),
                    key: update.key,
                    history: vec![value.clone()],
                    value,
                    version: 1,
                    metadata: update.metadata.unwrap_or_default(),
                    comment: update.comment.unwrap_or_default(),
                    is_rotated: false,
                };
                st.secrets.push(secret.clone());
                secret
            }
            None => continue,
        };
        written.push(secret.to_json(true));
    }
    Ok(written)
}
