//! HTTP plumbing: the per-request context, JSON responses and error bodies (`infisical-api.md`
//! §4), `reqId`, rate-limit headers, Zod-like validation issues and Fastify body parsing.

use std::collections::HashMap;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::Response;
use rand::Rng;
use serde_json::{Value, json};

use super::MSG_SOMETHING_WRONG;
use super::connection::ConnInfo;
use super::tokens::RateInfo;

/// Everything a handler needs about one request.
pub(super) struct Ctx {
    pub(super) method: Method,
    /// Path plus query, as sent (used in Fastify's 404 message).
    pub(super) url: String,
    pub(super) query: HashMap<String, String>,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
    pub(super) req_id: String,
    pub(super) conn: ConnInfo,
}

impl Ctx {
    /// The standard error body (`infisical-api.md` §4.1).
    pub(super) fn error(&self, status: u16, error: &str, message: impl Into<Value>) -> Response {
        json_response(
            status,
            &error_body(&self.req_id, status, error, message.into(), None),
        )
    }

    pub(super) fn error_with_details(
        &self,
        status: u16,
        error: &str,
        message: impl Into<Value>,
        details: Value,
    ) -> Response {
        json_response(
            status,
            &error_body(&self.req_id, status, error, message.into(), Some(details)),
        )
    }

    pub(super) fn validation_failure(&self, issues: Vec<Value>) -> Response {
        self.error(422, "ValidationFailure", Value::Array(issues))
    }

    pub(super) fn something_went_wrong(&self) -> Response {
        self.error(500, "InternalServerError", MSG_SOMETHING_WRONG)
    }

    pub(super) fn query_param(&self, key: &str) -> Option<&str> {
        self.query.get(key).map(String::as_str)
    }
}

pub(super) fn error_body(
    req_id: &str,
    status: u16,
    error: &str,
    message: Value,
    details: Option<Value>,
) -> Value {
    let mut body =
        json!({ "reqId": req_id, "statusCode": status, "message": message, "error": error });
    if let (Some(d), Some(obj)) = (details, body.as_object_mut()) {
        obj.insert("details".into(), d);
    }
    body
}

pub(super) fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

pub(super) fn add_header(resp: &mut Response, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        resp.headers_mut().append(n, v);
    }
}

pub(super) fn with_rate_headers(mut resp: Response, info: Option<RateInfo>) -> Response {
    if let Some(i) = info {
        add_header(&mut resp, "x-ratelimit-limit", &i.limit.to_string());
        add_header(&mut resp, "x-ratelimit-remaining", &i.remaining.to_string());
        add_header(&mut resp, "x-ratelimit-reset", &i.reset_secs.to_string());
    }
    resp
}

/// Fastify's default not-found body: no `reqId` (`infisical-api.md` §4.2).
pub(super) fn fastify_not_found(method: &Method, url: &str) -> Response {
    json_response(
        404,
        &json!({ "message": format!("Route {}:{} not found", method.as_str(), url), "error": "Not Found", "statusCode": 404 }),
    )
}

/// `req-` + 14 alphanumerics (Fastify `genReqId`).
pub(super) fn new_req_id() -> String {
    let suffix: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(14)
        .map(char::from)
        .collect();
    format!("req-{suffix}")
}

pub(super) fn zod_required(path: &[&str], expected: &str) -> Value {
    json!({ "code": "invalid_type", "expected": expected, "received": "undefined", "path": path, "message": "Required" })
}

pub(super) fn zod_wrong_type(path: &[&str], expected: &str, received: &Value) -> Value {
    let received = match received {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    json!({
        "code": "invalid_type", "expected": expected, "received": received, "path": path,
        "message": format!("Expected {expected}, received {received}"),
    })
}

pub(super) fn zod_too_small(path: &[&str], minimum: usize) -> Value {
    json!({
        "code": "too_small", "minimum": minimum, "type": "string", "inclusive": true, "exact": false,
        "message": format!("String must contain at least {minimum} character(s)"), "path": path,
    })
}

pub(super) fn zod_too_big(path: &[&str], maximum: usize) -> Value {
    json!({
        "code": "too_big", "maximum": maximum, "type": "string", "inclusive": true, "exact": false,
        "message": format!("String must contain at most {maximum} character(s)"), "path": path,
    })
}

pub(super) fn zod_invalid_uuid(path: &[&str]) -> Value {
    json!({ "validation": "uuid", "code": "invalid_string", "message": "Invalid uuid", "path": path })
}

pub(super) fn zod_unrecognized_keys(keys: &[String]) -> Value {
    let quoted: Vec<String> = keys.iter().map(|k| format!("'{k}'")).collect();
    json!({
        "code": "unrecognized_keys", "keys": keys, "path": [],
        "message": format!("Unrecognized key(s) in object: {}", quoted.join(", ")),
    })
}

/// Zod's uuid check: 8-4-4-4-12 hex digits, any case (no braces, no URN, no simple form).
pub(super) fn is_zod_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Validate a required query string (`z.string().trim().min(1)`), collecting issues.
pub(super) fn required_query(ctx: &Ctx, key: &'static str, issues: &mut Vec<Value>) -> String {
    match ctx.query_param(key) {
        None => {
            issues.push(zod_required(&[key], "string"));
            String::new()
        }
        Some(v) if v.trim().is_empty() => {
            issues.push(zod_too_small(&[key], 1));
            String::new()
        }
        Some(v) => v.trim().to_string(),
    }
}

pub(super) enum ParsedBody {
    Absent,
    Json(Value),
    Text,
}

/// Fastify's content-type parsing for POST bodies. Err = a Fastify error, which Infisical's error
/// handler turns into 500 `Something went wrong` (empty JSON body, invalid JSON, unsupported media).
pub(super) fn parse_body(ctx: &Ctx) -> Result<ParsedBody, ()> {
    let content_type = ctx
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        Some("application/json") => {
            if ctx.body.is_empty() {
                return Err(());
            }
            serde_json::from_slice::<Value>(&ctx.body)
                .map(ParsedBody::Json)
                .map_err(|_| ())
        }
        Some("text/plain") => Ok(ParsedBody::Text),
        // No body at all: nothing to parse, whatever the content type says.
        _ if ctx.body.is_empty() => Ok(ParsedBody::Absent),
        // A body Fastify has no parser for (or no content type): 415 upstream, 500 after Infisical's handler.
        _ => Err(()),
    }
}

/// Validate a strict object body with the given string fields (trimmed).
/// `required` fields must be present; `optional` may be absent. Unknown keys are rejected.
pub(super) fn parse_string_fields(
    body: &ParsedBody,
    required: &[&'static str],
    optional: &[(&'static str, usize, usize)],
) -> Result<HashMap<&'static str, String>, Vec<Value>> {
    let obj = match body {
        ParsedBody::Json(Value::Object(o)) => o,
        ParsedBody::Json(other) => return Err(vec![zod_wrong_type(&[], "object", other)]),
        ParsedBody::Absent | ParsedBody::Text => return Err(vec![zod_required(&[], "object")]),
    };
    let mut issues = Vec::new();
    let mut out = HashMap::new();
    for key in required {
        match obj.get(*key) {
            None => issues.push(zod_required(&[key], "string")),
            Some(Value::String(s)) => {
                out.insert(*key, s.trim().to_string());
            }
            Some(other) => issues.push(zod_wrong_type(&[key], "string", other)),
        }
    }
    for (key, min, max) in optional {
        match obj.get(*key) {
            None => {}
            Some(Value::String(s)) => {
                let len = s.trim().chars().count();
                if len < *min {
                    issues.push(zod_too_small(&[key], *min));
                } else if len > *max {
                    issues.push(zod_too_big(&[key], *max));
                } else {
                    out.insert(*key, s.trim().to_string());
                }
            }
            Some(other) => issues.push(zod_wrong_type(&[key], "string", other)),
        }
    }
    let unknown: Vec<String> = obj
        .keys()
        .filter(|k| !required.contains(&k.as_str()) && !optional.iter().any(|(o, _, _)| o == k))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        issues.push(zod_unrecognized_keys(&unknown));
    }
    if issues.is_empty() {
        Ok(out)
    } else {
        Err(issues)
    }
}
