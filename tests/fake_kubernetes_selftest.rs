//! The fake Kubernetes API server against the API reference, with a plain HTTPS client (not
//! rotator's): authentication, `Status` errors, create / AlreadyExists, optimistic concurrency
//! on PUT and PATCH, merge patches (a null removes a key), unsupported patch types, Secret data
//! validation, and a Deployment's generation moving only when its spec changes.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use rotator_testkit::fake_kubernetes::FakeKubernetes;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/app/secrets";

struct Client<'a> {
    fake: &'a FakeKubernetes,
    http: reqwest::Client,
    token: String,
}

impl<'a> Client<'a> {
    fn new(fake: &'a FakeKubernetes, token: &str) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(fake.ca_pem().as_bytes()) {
            roots.add(cert.expect("pem")).expect("root");
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("client");
        Self {
            fake,
            http,
            token: token.to_owned(),
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Value)>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.fake.server_url()))
            .bearer_auth(&self.token);
        if let Some((content_type, body)) = body {
            request = request
                .header("content-type", content_type)
                .body(body.to_string());
        }
        let response = request.send().await.expect("send");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

fn secret(name: &str, data: Value) -> Value {
    json!({ "apiVersion": "v1", "kind": "Secret", "metadata": { "name": name }, "type": "Opaque", "data": data })
}

#[tokio::test]
async fn requests_without_a_valid_token_are_401_status_objects() {
    let fake = FakeKubernetes::start().await;
    let (status, body) = Client::new(&fake, "not-a-token")
        .call(Method::GET, &format!("{SECRETS}/x"), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    assert_eq!(body["code"], 401);
}

#[tokio::test]
async fn secrets_are_created_once_and_read_back_with_metadata() {
    let fake = FakeKubernetes::start().await;
    let api = Client::new(&fake, &fake.token());
    let (status, body) = api.call(Method::GET, &format!("{SECRETS}/db"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        (body["reason"].as_str(), body["message"].as_str()),
        (Some("NotFound"), Some("secrets \"db\" not found"))
    );
    let json = "application/json";
    let (status, created) = api
        .call(
            Method::POST,
            SECRETS,
            Some((json, secret("db", json!({ "a": "eA==" })))),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["metadata"]["namespace"], "app");
    assert!(created["metadata"]["resourceVersion"].is_string());
    assert!(created["metadata"]["uid"].is_string());
    let (status, body) = api
        .call(Method::POST, SECRETS, Some((json, secret("db", json!({})))))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["reason"], "AlreadyExists");
    let (status, body) = api
        .call(
            Method::POST,
            SECRETS,
            Some((json, secret("bad", json!({ "k": "%%%" })))),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["reason"], "Invalid");
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_and_merge_patches_apply() {
    let fake = FakeKubernetes::start().await;
    let api = Client::new(&fake, &fake.token());
    let json = "application/json";
    let path = format!("{SECRETS}/db");
    let (_, created) = api
        .call(
            Method::POST,
            SECRETS,
            Some((json, secret("db", json!({ "a": "eA==", "b": "eQ==" })))),
        )
        .await;
    let mut update = created.clone();
    update["data"]["a"] = json!("eg==");
    let (status, updated) = api
        .call(Method::PUT, &path, Some((json, update.clone())))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(
        updated["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
    // The same resourceVersion again is stale now.
    let (status, body) = api.call(Method::PUT, &path, Some((json, update))).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["reason"], "Conflict");

    let patch = json!({ "data": { "b": null, "c": "dw==" } });
    let (status, patched) = api
        .call(
            Method::PATCH,
            &path,
            Some(("application/merge-patch+json", patch.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["data"], json!({ "a": "eg==", "c": "dw==" }));
    let stale = json!({ "metadata": { "resourceVersion": "1" }, "data": { "a": "eA==" } });
    let (status, _) = api
        .call(
            Method::PATCH,
            &path,
            Some(("application/strategic-merge-patch+json", stale)),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api
        .call(
            Method::PATCH,
            &path,
            Some(("application/json-patch+json", json!([]))),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(body["reason"], "UnsupportedMediaType");
    let (status, _) = api
        .call(
            Method::PUT,
            &format!("{SECRETS}/absent"),
            Some((json, secret("absent", json!({})))),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an update creates no Secret");

    // The hook: a concurrent writer gets in before the next write.
    fake.inject_conflicts("app", "db", 1);
    let (status, _) = api.call(Method::PUT, &path, Some((json, patched))).await;
    assert_eq!(status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_deployment_rolls_out_only_when_its_template_changes() {
    let fake = FakeKubernetes::start().await;
    fake.create_deployment("app", "api");
    let api = Client::new(&fake, &fake.token());
    let path = "/apis/apps/v1/namespaces/app/deployments/api";
    let patch = json!({ "spec": { "template": { "metadata": { "annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-12-03T05:00:00Z" } } } } });
    let smp = "application/strategic-merge-patch+json";
    let (status, first) = api
        .call(Method::PATCH, path, Some((smp, patch.clone())))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(first["metadata"]["generation"], 2);
    assert_eq!(
        first["spec"]["template"]["spec"]["containers"][0]["name"], "app",
        "the rest of the template is kept"
    );
    let (_, again) = api.call(Method::PATCH, path, Some((smp, patch))).await;
    assert_eq!(again["metadata"]["generation"], 2);
    let (status, body) = api
        .call(
            Method::PATCH,
            "/apis/apps/v1/namespaces/app/deployments/nope",
            Some((smp, json!({}))),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "deployments \"nope\" not found");
}
