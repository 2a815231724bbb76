//! The type catalogue (the 14 rotation types in scope, with their display names, connection apps
//! and secret mappings) and the seed data: one rotation per type with realistic parameters, and
//! the options templates.

use serde_json::{Map, Value, json};

pub(super) struct TypeInfo {
    pub(super) slug: &'static str,
    pub(super) display: &'static str,
    pub(super) app: &'static str,
    /// (logical field, default secret name) in the template's order.
    pub(super) mapping: &'static [(&'static str, &'static str)],
}

#[rustfmt::skip]
pub(super) const TYPES: &[TypeInfo] = &[
    TypeInfo { slug: "windows-local-account", display: "Windows Local Account", app: "smb",
        mapping: &[("username", "WINDOWS_USERNAME"), ("password", "WINDOWS_PASSWORD")] },
    TypeInfo { slug: "unix-linux-local-account", display: "Unix/Linux Local Account", app: "ssh",
        mapping: &[("username", "UNIX_USERNAME"), ("password", "UNIX_PASSWORD")] },
    TypeInfo { slug: "redis-credentials", display: "Redis Credentials", app: "redis",
        mapping: &[("username", "REDIS_USERNAME"), ("password", "REDIS_PASSWORD")] },
    TypeInfo { slug: "postgres-credentials", display: "PostgreSQL Credentials", app: "postgres",
        mapping: &[("username", "POSTGRES_DB_USERNAME"), ("password", "POSTGRES_DB_PASSWORD")] },
    TypeInfo { slug: "oracledb-credentials", display: "OracleDB Credentials", app: "oracledb",
        mapping: &[("username", "ORACLEDB_USERNAME"), ("password", "ORACLEDB_PASSWORD")] },
    TypeInfo { slug: "okta-client-secret", display: "Okta Client Secret", app: "okta",
        mapping: &[("clientId", "OKTA_CLIENT_ID"), ("clientSecret", "OKTA_CLIENT_SECRET")] },
    TypeInfo { slug: "mysql-credentials", display: "MySQL Credentials", app: "mysql",
        mapping: &[("username", "MYSQL_USERNAME"), ("password", "MYSQL_PASSWORD")] },
    TypeInfo { slug: "mssql-credentials", display: "Microsoft SQL Server Credentials", app: "mssql",
        mapping: &[("username", "MSSQL_DB_USERNAME"), ("password", "MSSQL_DB_PASSWORD")] },
    TypeInfo { slug: "mongodb-credentials", display: "MongoDB Credentials", app: "mongodb",
        mapping: &[("username", "MONGODB_DB_USERNAME"), ("password", "MONGODB_DB_PASSWORD")] },
    TypeInfo { slug: "ldap-password", display: "LDAP Password", app: "ldap",
        mapping: &[("dn", "LDAP_DN"), ("password", "LDAP_PASSWORD")] },
    TypeInfo { slug: "databricks-service-principal-secret", display: "Databricks Service Principal Secret",
        app: "databricks",
        mapping: &[("clientId", "DATABRICKS_CLIENT_ID"), ("clientSecret", "DATABRICKS_CLIENT_SECRET")] },
    TypeInfo { slug: "azure-client-secret", display: "Azure Client Secret", app: "azure-client-secrets",
        mapping: &[("clientId", "AZURE_CLIENT_ID"), ("clientSecret", "AZURE_CLIENT_SECRET")] },
    TypeInfo { slug: "aws-iam-user-secret", display: "AWS IAM User Secret", app: "aws",
        mapping: &[("accessKeyId", "AWS_ACCESS_KEY_ID"), ("secretAccessKey", "AWS_SECRET_ACCESS_KEY")] },
    TypeInfo { slug: "auth0-client-secret", display: "Auth0 Client Secret", app: "auth0",
        mapping: &[("clientId", "AUTH0_CLIENT_ID"), ("clientSecret", "AUTH0_CLIENT_SECRET")] },
];

pub(super) fn type_info(slug: &str) -> Option<&'static TypeInfo> {
    TYPES.iter().find(|t| t.slug == slug)
}

/// Display name of a type, as used in upstream messages (`Could not find <Display Name> Rotation ...`).
pub fn display_name(type_slug: &str) -> Option<&'static str> {
    type_info(type_slug).map(|t| t.display)
}

/// Connection `app` literal of a type.
pub fn connection_app(type_slug: &str) -> Option<&'static str> {
    type_info(type_slug).map(|t| t.app)
}

pub(super) fn is_sql_type(slug: &str) -> bool {
    matches!(
        slug,
        "postgres-credentials" | "mysql-credentials" | "mssql-credentials" | "oracledb-credentials"
    )
}

/// Where and how each type's pre-seeded rotation lives.
pub(super) struct SeedSpec {
    pub(super) slug: &'static str,
    pub(super) name: &'static str,
    pub(super) description: Option<&'static str>,
    pub(super) env: &'static str,
    pub(super) path: &'static str,
    pub(super) connection_name: &'static str,
    pub(super) interval_days: u32,
    pub(super) rotate_at: (u32, u32),
    pub(super) auto_rotation: bool,
}

/// (type, name, description, environment, secret path, connection name, interval days, rotateAtUtc,
/// auto-rotation). The mysql rotation has auto-rotation off, so `nextRotationAt` is null.
#[rustfmt::skip]
pub(super) const SEEDS: &[SeedSpec] = &[
    SeedSpec { slug: "postgres-credentials", name: "pg-orders-db", description: Some("Orders service database login"),
        env: "prod", path: "/databases", connection_name: "prod-postgres", interval_days: 30, rotate_at: (2, 0), auto_rotation: true },
    SeedSpec { slug: "mysql-credentials", name: "mysql-legacy-crm", description: None,
        env: "prod", path: "/databases", connection_name: "prod-mysql", interval_days: 14, rotate_at: (3, 30), auto_rotation: false },
    SeedSpec { slug: "mssql-credentials", name: "mssql-reporting", description: Some("Reporting warehouse login"),
        env: "prod", path: "/databases", connection_name: "prod-mssql", interval_days: 30, rotate_at: (4, 15), auto_rotation: true },
    SeedSpec { slug: "oracledb-credentials", name: "oracle-erp", description: None,
        env: "prod", path: "/databases", connection_name: "prod-oracle", interval_days: 60, rotate_at: (1, 0), auto_rotation: true },
    SeedSpec { slug: "mongodb-credentials", name: "mongo-catalog", description: Some("Catalog service MongoDB users"),
        env: "prod", path: "/databases", connection_name: "prod-mongodb", interval_days: 7, rotate_at: (0, 0), auto_rotation: true },
    SeedSpec { slug: "redis-credentials", name: "redis-cache", description: None,
        env: "dev", path: "/", connection_name: "dev-redis", interval_days: 1, rotate_at: (0, 30), auto_rotation: true },
    SeedSpec { slug: "auth0-client-secret", name: "auth0-backend-m2m", description: Some("Backend machine-to-machine app"),
        env: "prod", path: "/", connection_name: "prod-auth0", interval_days: 90, rotate_at: (9, 0), auto_rotation: true },
    SeedSpec { slug: "okta-client-secret", name: "okta-portal-client", description: None,
        env: "prod", path: "/", connection_name: "prod-okta", interval_days: 30, rotate_at: (6, 45), auto_rotation: true },
    SeedSpec { slug: "azure-client-secret", name: "azure-payments-app", description: Some("Payments API app registration"),
        env: "prod", path: "/cloud", connection_name: "prod-azure-graph", interval_days: 180, rotate_at: (12, 0), auto_rotation: true },
    SeedSpec { slug: "aws-iam-user-secret", name: "aws-ci-deployer", description: Some("CI deployer IAM user"),
        env: "staging", path: "/cloud", connection_name: "staging-aws", interval_days: 30, rotate_at: (23, 59), auto_rotation: true },
    SeedSpec { slug: "databricks-service-principal-secret", name: "databricks-etl-sp", description: None,
        env: "staging", path: "/cloud", connection_name: "staging-databricks", interval_days: 90, rotate_at: (5, 0), auto_rotation: true },
    SeedSpec { slug: "ldap-password", name: "ldap-svc-app", description: Some("AD service account for the app tier"),
        env: "prod", path: "/directory", connection_name: "prod-active-directory", interval_days: 45, rotate_at: (2, 30), auto_rotation: true },
    SeedSpec { slug: "unix-linux-local-account", name: "unix-app-host", description: Some("Local account on the app host"),
        env: "staging", path: "/hosts", connection_name: "staging-ssh-bastion", interval_days: 30, rotate_at: (3, 0), auto_rotation: true },
    SeedSpec { slug: "windows-local-account", name: "windows-backup-svc", description: None,
        env: "staging", path: "/hosts", connection_name: "staging-smb-fileserver", interval_days: 30, rotate_at: (3, 15), auto_rotation: true },
];

pub(super) const ENVIRONMENTS: &[(&str, &str)] = &[
    ("dev", "Development"),
    ("staging", "Staging"),
    ("prod", "Production"),
];

pub(super) fn password_requirements(
    length: u32,
    lower: u32,
    upper: u32,
    digits: u32,
    symbols: u32,
    allowed: &str,
) -> Value {
    json!({
        "length": length,
        "required": { "lowercase": lower, "uppercase": upper, "digits": digits, "symbols": symbols },
        "allowedSymbols": allowed,
    })
}

/// Realistic `parameters` for each type, with every optional field filled in.
pub(super) fn seed_parameters(slug: &str) -> Value {
    match slug {
        "postgres-credentials" => json!({
            "username1": "orders_app_1",
            "username2": "orders_app_2",
            "rotationStatement": "ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'",
            "passwordRequirements": password_requirements(48, 1, 1, 1, 0, "-_.~!*"),
        }),
        "mysql-credentials" => json!({
            "username1": "crm_app_1",
            "username2": "crm_app_2",
            "rotationStatement": "ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'",
            "passwordRequirements": password_requirements(32, 2, 2, 2, 0, "-_.~!*"),
        }),
        "mssql-credentials" => json!({
            "username1": "reporting_login_1",
            "username2": "reporting_login_2",
            "rotationStatement": "ALTER LOGIN [{{username}}] WITH PASSWORD = '{{password}}'",
            "passwordRequirements": password_requirements(40, 1, 1, 1, 1, "-_.~!*"),
        }),
        "oracledb-credentials" => json!({
            "username1": "ERP_APP_1",
            "username2": "ERP_APP_2",
            "rotationStatement": "ALTER USER \"{{username}}\" IDENTIFIED BY \"{{password}}\"",
            "passwordRequirements": password_requirements(30, 1, 1, 1, 0, "-_.~!*"),
        }),
        "mongodb-credentials" => {
            json!({ "username1": "catalog_rw_1", "username2": "catalog_rw_2" })
        }
        "redis-credentials" => json!({
            "permissionScope": "~* +@all",
            "passwordRequirements": password_requirements(48, 1, 1, 1, 0, "-_.~!*"),
        }),
        "auth0-client-secret" => json!({ "clientId": "Xk3pQ9vT2mW8rL5nB7cD1fG4hJ6sA0eY" }),
        "okta-client-secret" => json!({ "clientId": "0oa8k2m4n6p8r0t2v4x6" }),
        "azure-client-secret" => json!({
            "objectId": "4f6a2c8e-1b3d-4e5f-a7c9-0d2e4f6a8b1c",
            "clientId": "9e7c5a3b-1d2f-4a6c-8e0b-3f5d7a9c1e2b",
            "appName": "payments-api",
        }),
        "aws-iam-user-secret" => json!({ "userName": "ci-deployer", "region": "us-east-1" }),
        "databricks-service-principal-secret" => json!({
            "servicePrincipalId": "76997828332531",
            "clientId": "1c3e5a7b-9d2f-4b6a-8c0e-2f4a6c8e0b1d",
            "servicePrincipalName": "etl-pipeline-sp",
        }),
        "ldap-password" => json!({
            "dn": "CN=svc-app,OU=Service Accounts,DC=corp,DC=example,DC=com",
            "rotationMethod": "connection-principal",
            "passwordRequirements": password_requirements(64, 2, 2, 2, 2, "-_.~!*"),
        }),
        "unix-linux-local-account" => json!({
            "username": "appsvc",
            "rotationMethod": "login-as-root",
            "passwordRequirements": password_requirements(36, 2, 2, 2, 2, "-_.~!*"),
            "useSudo": true,
        }),
        "windows-local-account" => json!({
            "username": "svc_backup",
            "rotationMethod": "login-as-root",
            "passwordRequirements": password_requirements(32, 1, 1, 1, 1, "-_.~!*"),
        }),
        _ => json!({}),
    }
}

pub(super) fn default_secrets_mapping(ti: &TypeInfo) -> Value {
    let mut m = Map::new();
    for (field, name) in ti.mapping {
        m.insert(field.to_string(), Value::String(name.to_string()));
    }
    Value::Object(m)
}

/// The options template of one type (`GET /api/v2/secret-rotations/options`).
pub(super) fn options_template(ti: &TypeInfo) -> Value {
    let mapping = default_secrets_mapping(ti);
    let (create, rotation): (Option<&str>, Option<&str>) = match ti.slug {
        "postgres-credentials" => (
            Some(
                "-- create user\nCREATE USER infisical_user WITH ENCRYPTED PASSWORD 'temporary_password';\n\n-- grant database connection permissions\nGRANT CONNECT ON DATABASE my_database TO infisical_user;\n\n-- grant relevant table permissions\nGRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO infisical_user;",
            ),
            Some("ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'"),
        ),
        "mysql-credentials" => (
            Some(
                "-- create user\nCREATE USER 'infisical_user'@'%' IDENTIFIED BY 'temporary_password';\n\n-- grant all privileges\nGRANT ALL PRIVILEGES ON my_database.* TO 'infisical_user'@'%';\n\n-- apply the privilege changes\nFLUSH PRIVILEGES;",
            ),
            Some("ALTER USER '{{username}}'@'%' IDENTIFIED BY '{{password}}'"),
        ),
        "mssql-credentials" => (
            Some(
                "-- create login\nCREATE LOGIN [infisical_user] WITH PASSWORD = 'temporary_password';\n\n-- grant permissions to connect to the server\nGRANT CONNECT SQL TO [infisical_user];\n\n-- switch to the database\nUSE my_database;\n\n-- create the database user\nCREATE USER [infisical_user] FOR LOGIN [infisical_user];\n\n-- grant relevant permissions\nGRANT SELECT, INSERT, UPDATE, DELETE ON SCHEMA::dbo TO [infisical_user];",
            ),
            Some("ALTER LOGIN [{{username}}] WITH PASSWORD = '{{password}}'"),
        ),
        "oracledb-credentials" => (
            Some(
                "-- create user\nCREATE USER INFISICAL_USER IDENTIFIED BY \"temporary_password\";\n\n-- grant all privileges\nGRANT ALL PRIVILEGES TO INFISICAL_USER;",
            ),
            Some("ALTER USER \"{{username}}\" IDENTIFIED BY \"{{password}}\""),
        ),
        "mongodb-credentials" => (
            Some(
                "use [DATABASE_NAME]\ndb.createUser({\n  user: \"infisical_user_1\",\n  pwd: \"temporary_password\",\n  roles: [{ role: \"readWrite\", db: \"[DATABASE_NAME]\" }]\n})\n\ndb.createUser({\n  user: \"infisical_user_2\",\n  pwd: \"temporary_password\",\n  roles: [{ role: \"readWrite\", db: \"[DATABASE_NAME]\" }]\n})",
            ),
            None,
        ),
        _ => (None, None),
    };
    let mut t = Map::new();
    if let Some(c) = create {
        t.insert("createUserStatement".into(), Value::String(c.into()));
    }
    if let Some(r) = rotation {
        t.insert("rotationStatement".into(), Value::String(r.into()));
    }
    t.insert("secretsMapping".into(), mapping);
    Value::Object(t)
}
