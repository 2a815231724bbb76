//! Compiles `proto/` with protox (pure Rust; no protoc on the machine) and writes the descriptor
//! set that server reflection serves.
//!
//! The descriptor set also holds `google/rpc/status.proto` and `google/rpc/error_details.proto`
//! (vendored from googleapis, Apache-2.0): the error details rotator attaches (`ErrorInfo`,
//! `RequestInfo`, `RetryInfo`, …) are then resolvable by reflection, so grpcurl prints them
//! instead of base64. No Rust code is generated for them: tonic-types has their types.

use prost::Message as _;

/// Messages that also travel as JSON (Infisical's camelCase model, TOML config): serde derives.
const JSON_MESSAGES: &[&str] = &[
    "PasswordRequirements",
    "RequiredCharacters",
    "SqlCredentialsParameters",
    "MongoDbCredentialsParameters",
    "RedisCredentialsParameters",
    "LdapPasswordParameters",
    "LocalAccountParameters",
    "ClientIdParameters",
    "AzureClientSecretParameters",
    "AwsIamUserSecretParameters",
    "DatabricksServicePrincipalSecretParameters",
    "UsernamePasswordMapping",
    "LdapPasswordMapping",
    "ClientSecretMapping",
    "AwsIamUserSecretMapping",
    "UsernamePasswordCredential",
    "LdapPasswordCredential",
    "Auth0ClientSecretCredential",
    "ClientSecretWithIdCredential",
    "AzureClientSecretCredential",
    "AwsIamUserSecretCredential",
    "Connection",
    "Environment",
    "Folder",
    "RotateAtUtc",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(
        ["rotator/v1/rotation.proto", "rotator/v1/events.proto"],
        ["proto"],
    )?;
    let served = protox::compile(
        [
            "rotator/v1/rotation.proto",
            "rotator/v1/events.proto",
            "google/rpc/status.proto",
            "google/rpc/error_details.proto",
        ],
        ["proto"],
    )?;
    std::fs::write(out.join("rotator_descriptor.bin"), served.encode_to_vec())?;
    let mut builder = tonic_prost_build::configure()
        .build_client(true)
        .build_server(true);
    for name in JSON_MESSAGES {
        builder = builder.type_attribute(
            format!(".rotator.v1.{name}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(rename_all = \"camelCase\", default)]",
        );
    }
    builder.compile_fds(fds)?;
    Ok(())
}
