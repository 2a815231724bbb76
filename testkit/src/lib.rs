//! Fixtures for rotator's integration tests and benches, used as an ordinary dev-dependency
//! (`use rotator_testkit::fake_infisical::FakeInfisical;`).
//!
//! # Layout
//!
//! rotator under test:
//! - [`rotator_server`]: a real rotator server on a loopback port, configured from env maps.
//! - [`secure`]: a throwaway rcgen PKI, a server configured from TOML, plaintext/TLS/mTLS clients.
//! - [`issued_local`]: local rotations of issued client secrets through the binary, read back.
//! - [`local_server`]: a local-rotation server (binary or in-process) and logins to check passwords.
//! - [`delivery_redis`]: what the delivery tests read back from a rotator: sinks, credential, outbox.
//! - [`events`]: unique NATS names, a private restartable nats-server, stream reads, `run_on`.
//! - [`nats_cluster`]: a three-node JetStream cluster; find and kill the stream leader, restart.
//!
//! Its peers:
//! - [`fake_infisical`]: a fake Infisical built from the vendor contract, with failure injection.
//! - [`fake_okta`]: a fake Okta org (client secrets API, token endpoint), with failure injection.
//! - [`fake_databricks`]: a fake Databricks (service principal secrets, OAuth M2M), with failures.
//! - [`fake_http`]: what the fakes of HTTP APIs share (loopback server, failures, `Retry-After`,
//!   Basic and bearer auth, forms).
//! - [`fake_azure`]: the Microsoft identity platform token endpoint and Graph application
//!   passwords; [`fake_auth0`]: Auth0's `/oauth/token` and Management API client routes.
//! - [`fake_kubernetes`]: a fake Kubernetes API server (Secrets, Deployments, resourceVersion
//!   conflicts, bearer-token and client-certificate auth over HTTPS), with a conflict hook.
//! - [`otlp`]: an OTLP collector (gRPC and HTTP/protobuf) keeping spans and metrics.
//! - [`scratch_postgres`]: a database of its own on the shared PostgreSQL, dropped on drop.
//! - [`private_postgres`]: a private PostgreSQL 15 cluster with `scram-sha-256` logins.
//! - [`mariadb`]: accounts on the shared MariaDB, unique per test, dropped on drop.
//! - [`private_mariadb`]: a private MariaDB server with extra server options.
//! - [`private_redis`]: a private Redis 7 server with ACL users.
//! - [`sshd`]: a private OpenSSH server and real local accounts (`rotu_*`) with sudo rights.
//! - [`moto`]: a private moto server (AWS IAM and STS emulator) with signatures enforced.
//! - [`samba_standalone`]: a private standalone smbd (tdbsam local accounts, SAMR over SMB).
//! - [`secantusdb`]: a private SecantusDB (MongoDB wire-compatible) server with SCRAM users,
//!   optionally behind TLS.
//! - [`slapd`]: a private OpenLDAP slapd (ldap://, StartTLS, ldaps://, self-signed certificate).
//! - [`samba_ad`]: a Samba AD DC on 127.0.0.1's fixed ports (one per machine: test group `samba`).
//! - [`test_ca`]: a throwaway CA and server certificate (openssl), and self-signed (CA:TRUE)
//!   certificates (openssl, rcgen), for the drivers' TLS modes and `ca_file` pinning.
//! - [`tcp_gate`]: a forwarder in front of a real server that a test shuts and opens again.
//! - [`tls_front`]: a TLS listener with a chosen certificate in front of a plain server.
//! - [`driver_conformance`]: the driver contract (`docs/specs/driver.md`) as one harness.
//!
//! What it said:
//! - [`log_capture`]: a tracing writer keeping every formatted line.
//! - [`log_lines`]: rotator's JSON log lines captured in memory, parsed per line.
//! - [`prometheus`]: a parser of the Prometheus text format.
//! - [`promql`]: the metric selectors of PromQL expressions (dashboard queries).

pub mod delivery_redis;
pub mod driver_conformance;
pub mod events;
pub mod fake_auth0;
pub mod fake_azure;
pub mod fake_databricks;
pub mod fake_http;
pub mod fake_infisical;
pub mod fake_kubernetes;
pub mod fake_okta;
pub mod issued_local;
pub mod local_server;
pub mod log_capture;
pub mod log_lines;
pub mod mariadb;
pub mod moto;
pub mod nats_cluster;
pub mod otlp;
pub mod private_mariadb;
pub mod private_postgres;
pub mod private_redis;
pub mod prometheus;
pub mod promql;
pub mod rotator_server;
pub mod samba_ad;
pub mod samba_standalone;
pub mod scratch_postgres;
pub mod secantusdb;
pub mod secure;
pub mod slapd;
pub mod sshd;
pub mod tcp_gate;
pub mod test_ca;
pub mod tls_front;
