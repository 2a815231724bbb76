//! The AWS Secrets Manager sink on moto (signatures checked): the first delivery creates the
//! secret, the next moves AWSCURRENT to the new version and AWSPREVIOUS to the old one, a
//! retried version is the same version to AWS (deterministic ClientRequestToken), and an
//! unreachable endpoint fails without any value in the error.
//!
//! Needs `moto[server]` (scripts/test.sh installs it).

use rotator::config::sinks::AwsSecretsManagerSink;
use rotator::delivery::{Payload, Sink as _};
use rotator::secret::SecretString;
use rotator_testkit::moto::{Moto, REGION};
use serde_json::{Value, json};

fn sink(moto: &Moto, secret_id: &str, key: (&str, &str)) -> AwsSecretsManagerSink {
    AwsSecretsManagerSink {
        secret_id: secret_id.to_owned(),
        region: REGION.to_owned(),
        endpoint: Some(moto.endpoint()),
        access_key_id: SecretString::new(key.0),
        secret_access_key: SecretString::new(key.1),
    }
}

fn values(password: &str) -> Vec<(String, SecretString)> {
    vec![
        ("DB_PASSWORD".to_owned(), SecretString::new(password)),
        ("DB_USER".to_owned(), SecretString::new("app_b")),
    ]
}

async fn deliver(sink: &AwsSecretsManagerSink, version: u64, password: &str) {
    let values = values(password);
    sink.deliver(&Payload {
        rotation_id: "6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10",
        version,
        values: &values,
    })
    .await
    .unwrap_or_else(|e| panic!("version {version}: {e}"));
}

async fn stage(sink: &AwsSecretsManagerSink, label: &str) -> Value {
    let answer = sink
        .request(
            "GetSecretValue",
            &json!({ "SecretId": sink.secret_id, "VersionStage": label }),
        )
        .await
        .unwrap_or_else(|e| panic!("GetSecretValue {label}: {e}"));
    serde_json::from_str(answer["SecretString"].as_str().expect("a string")).expect("json")
}

#[tokio::test]
async fn versions_move_the_staging_labels_and_retries_are_one_version() {
    let moto = Moto::shared().await;
    let admin = moto.admin();
    let secret_id = format!("prod/app/db-{}", uuid::Uuid::new_v4());
    let sink = sink(&moto, &secret_id, (&admin.id, admin.secret.expose()));

    deliver(&sink, 1, "first-Pw-1").await;
    assert_eq!(
        stage(&sink, "AWSCURRENT").await["DB_PASSWORD"],
        "first-Pw-1"
    );
    deliver(&sink, 2, "second-Pw-2").await;
    assert_eq!(
        stage(&sink, "AWSCURRENT").await["DB_PASSWORD"],
        "second-Pw-2"
    );
    assert_eq!(
        stage(&sink, "AWSPREVIOUS").await["DB_PASSWORD"],
        "first-Pw-1"
    );
    assert_eq!(stage(&sink, "AWSCURRENT").await["DB_USER"], "app_b");

    // The same version again (a lost answer retried) is no new version.
    deliver(&sink, 2, "second-Pw-2").await;
    let versions = sink
        .request("ListSecretVersionIds", &json!({ "SecretId": secret_id }))
        .await
        .expect("list versions");
    let ids = versions["Versions"].as_array().expect("versions");
    assert_eq!(ids.len(), 2, "{versions}");
    assert_eq!(
        stage(&sink, "AWSPREVIOUS").await["DB_PASSWORD"],
        "first-Pw-1"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_without_a_value() {
    let closed = rotator_testkit::local_server::free_port();
    let sink = AwsSecretsManagerSink {
        secret_id: "prod/unreachable".to_owned(),
        region: REGION.to_owned(),
        endpoint: Some(format!("http://127.0.0.1:{closed}/")),
        access_key_id: SecretString::new("AKIAUNKNOWN000000000"),
        secret_access_key: SecretString::new("wrong-secret-wrong-secret-wrong-secret00"),
    };
    let values = values("never-Logged-9");
    let error = sink
        .deliver(&Payload {
            rotation_id: "r",
            version: 1,
            values: &values,
        })
        .await
        .expect_err("refused");
    let text = error.to_string();
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains("never-Logged-9") && !text.contains("wrong-secret"));
}
