//! Compiles `proto/` with protox (pure Rust; no protoc on the machine) and writes the descriptor
//! set that server reflection serves.

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
    std::fs::write(out.join("rotator_descriptor.bin"), fds.encode_to_vec())?;
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
