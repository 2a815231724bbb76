//! Compiles `proto/` with protox (pure Rust; no protoc on the machine) and writes the descriptor
//! set that server reflection serves.
//!
//! The descriptor set also holds `google/rpc/status.proto` and `google/rpc/error_details.proto`
//! (vendored from googleapis, Apache-2.0): the error details rotator attaches (`ErrorInfo`,
//! `RequestInfo`, `RetryInfo`, …) are then resolvable by reflection, so grpcurl prints them
//! instead of base64. No Rust code is generated for them: tonic-types has their types.
//!
//! It also sets `BUILD_GIT_COMMIT` (`git rev-parse --short HEAD`, or `unknown` outside a
//! checkout) and `BUILD_DATE_UTC` (from `SOURCE_DATE_EPOCH` for reproducible builds, else now)
//! for `rotator --version`. Not `ROTATOR_*`: cargo also puts these in the environment of the
//! tests it runs, where `serve` refuses unknown `ROTATOR_*` variables.

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
    version_info();
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

/// `BUILD_GIT_COMMIT` and `BUILD_DATE_UTC`, rebuilt when HEAD moves.
fn version_info() {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
    };
    let commit = git(&["rev-parse", "--short=10", "HEAD"]);
    println!(
        "cargo:rustc-env=BUILD_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    // HEAD, and the branch file it points to, change on every commit and checkout.
    for path in [
        git(&["rev-parse", "--path-format=absolute", "--git-path", "HEAD"]),
        git(&["symbolic-ref", "-q", "HEAD"])
            .and_then(|name| git(&["rev-parse", "--path-format=absolute", "--git-path", &name])),
    ]
    .into_iter()
    .flatten()
    {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    let seconds = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    let (y, m, d) = civil_from_days(seconds.div_euclid(86_400));
    println!("cargo:rustc-env=BUILD_DATE_UTC={y:04}-{m:02}-{d:02}");
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
