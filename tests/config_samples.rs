//! The configuration users copy: `deploy/rotator.toml` and every ```toml block of the README and
//! `docs/`. Regression: the `docs/local.md` example put three keys on one line with `;`, which is
//! not TOML, so copying it got exit 64.
//!
//! The rule for doc blocks: a ```toml block is a whole configuration and must load
//! (`Config::from_toml_str` with the environment below, then `rotator::local::check` finds
//! nothing). A block whose first line starts with `# fragment` shows part of a configuration with
//! placeholders (files that do not exist, elided hashes): it must be valid TOML and use only
//! known keys of the right types, but may fail the checks that need real files or values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rotator::config::{Config, ConfigProblem, Env};

const ENCRYPTION_KEY: &str = "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

/// What the samples' references point to.
fn sample_env() -> Env {
    HashMap::from(
        [
            ("ROTATOR_ENCRYPTION_KEY", ENCRYPTION_KEY),
            ("PG_ADMIN_PASSWORD", "example-admin-password"),
            ("PG_ADMIN", "example-admin-password"),
            ("INFISICAL_CLIENT_SECRET", "example-client-secret"),
            ("SMB_ADMIN_PASSWORD", "example-admin-password"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    )
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load_whole(text: &str, origin: &str) {
    let config = Config::from_toml_str(text, &sample_env())
        .unwrap_or_else(|e| panic!("{origin} does not load:\n{e}"));
    let problems = rotator::local::check(&config);
    assert!(
        problems.is_empty(),
        "{origin}: the drivers refuse it: {problems:?}"
    );
}

/// Problems about the shape (unknown keys, wrong types), as opposed to values that need real
/// files or hashes.
fn shape_problems(problems: &[ConfigProblem]) -> Vec<&ConfigProblem> {
    const SHAPE: &[&str] = &[
        "unknown key",
        "must be a string",
        "must be a whole number",
        "must be true or false",
        "must be a list of strings",
        "must be a table",
        "must be an array of tables",
        "not valid TOML",
    ];
    problems
        .iter()
        .filter(|p| SHAPE.iter().any(|s| p.reason.starts_with(s)))
        .collect()
}

#[test]
fn the_sample_configuration_loads_and_the_drivers_accept_it() {
    let path = root().join("deploy/rotator.toml");
    let text = std::fs::read_to_string(&path).expect("deploy/rotator.toml");
    load_whole(&text, "deploy/rotator.toml");
}

#[test]
fn the_sample_configuration_shows_every_key() {
    let text = std::fs::read_to_string(root().join("deploy/rotator.toml")).expect("sample");
    let written: Vec<String> = text
        .lines()
        .filter_map(|line| {
            let line = line.trim_start().trim_start_matches('#').trim_start();
            let (key, _) = line.split_once('=')?;
            let key = key.trim();
            (!key.is_empty() && !key.contains(' ')).then(|| key.to_owned())
        })
        .collect();
    let missing: Vec<String> = rotator::config::known_keys()
        .into_iter()
        .filter(|path| {
            let leaf = path.rsplit('.').next().unwrap_or(path);
            !written.iter().any(|w| w == leaf)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "keys missing from deploy/rotator.toml: {missing:?}"
    );
}

/// Every ```toml block of README.md and docs/**/*.md, with where it starts.
fn toml_blocks() -> Vec<(String, String)> {
    let mut files = vec![root().join("README.md")];
    let mut dirs = vec![root().join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("docs").flatten() {
            let path: PathBuf = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
    }
    let mut blocks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read doc");
        let name = file
            .strip_prefix(root())
            .unwrap_or(&file)
            .display()
            .to_string();
        let mut current: Option<(usize, String)> = None;
        for (i, line) in text.lines().enumerate() {
            match &mut current {
                None if line.trim_start().starts_with("```toml") => {
                    current = Some((i + 1, String::new()));
                }
                Some((start, body)) if line.trim_start().starts_with("```") => {
                    blocks.push((format!("{name}:{start}"), std::mem::take(body)));
                    current = None;
                }
                Some((_, body)) => {
                    body.push_str(line);
                    body.push('\n');
                }
                None => {}
            }
        }
    }
    blocks
}

#[test]
fn every_toml_block_of_the_docs_parses() {
    let blocks = toml_blocks();
    assert!(blocks.len() >= 2, "no toml blocks found: {blocks:?}");
    for (origin, text) in blocks {
        if text.trim_start().starts_with("# fragment") {
            if let Err(error) = Config::from_toml_str(&text, &sample_env()) {
                let shape = shape_problems(&error.0);
                assert!(shape.is_empty(), "{origin} (a fragment): {shape:?}");
            }
        } else {
            load_whole(&text, &origin);
        }
    }
}

/// The configuration files of deploy/ (Kubernetes ConfigMaps, compose) load as they are
/// deployed: their `file:` references under /run/secrets/rotator/ point at a directory holding
/// those files, as the mounted Secret does. scripts/check_deploy.py checks the manifests around
/// them (grace periods, ports, probes, mounts).
#[test]
fn the_deployment_configurations_load() {
    let secrets = tempfile::tempdir().expect("tempdir");
    for (name, value) in [
        ("infisical-client-secret", "example-client-secret"),
        (
            "store-url",
            "postgres://rotator:example@postgres:5432/rotator",
        ),
    ] {
        std::fs::write(secrets.path().join(name), value).expect("write secret file");
    }
    let mounted = format!("{}/", secrets.path().display());
    for (file, shared_store) in [
        ("deploy/kubernetes/base/rotator.toml", false),
        ("deploy/kubernetes/overlays/postgres/rotator.toml", true),
        ("deploy/compose/rotator.toml", true),
    ] {
        let text = std::fs::read_to_string(root().join(file)).expect("read");
        assert!(text.contains("/run/secrets/rotator/"), "{file}");
        let text = text.replace("/run/secrets/rotator/", &mounted);
        let config = Config::from_toml_str(&text, &sample_env())
            .unwrap_or_else(|e| panic!("{file} does not load:\n{e}"));
        assert!(rotator::local::check(&config).is_empty(), "{file}");
        assert_eq!(config.store_url.is_some(), shared_store, "{file}");
        assert!(!config.listen.ip().is_loopback(), "{file}: listen");
        assert!(
            config
                .admin_listen
                .is_some_and(|admin| !admin.ip().is_loopback()),
            "{file}: the probes need admin_listen off loopback"
        );
    }
}
