//! The state shared by the handle and the handlers, behind one mutex: environments, folders,
//! rotations, tokens, locks, injections, counters and recorded requests.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use uuid::Uuid;

use super::catalogue::{
    ENVIRONMENTS, SEEDS, SeedSpec, default_secrets_mapping, seed_parameters, type_info,
};
use super::connection::ConnHandle;
use super::credentials::generate_credential;
use super::inject::Injection;
use super::rotation::{Connection, Environment, Folder, Rotation};
use super::secret_routes::{Batch, FakeSecret};
use super::tokens::{Bucket, IssuedJwt, Lockout, TokenRow};
use super::{FakeConfig, PROJECT_ID, RecordedRequest, Route};

pub(super) struct InflightLock {
    pub(super) token: u64,
    pub(super) taken_at: Instant,
}

pub(super) struct State {
    pub(super) cfg: FakeConfig,
    pub(super) environments: Vec<Environment>,
    pub(super) folders: Vec<Folder>,
    pub(super) rotations: Vec<Rotation>,
    /// The secrets written through the secrets API.
    pub(super) secrets: Vec<FakeSecret>,
    /// Folders `(environment, path)` under a change policy: writes become approval requests.
    pub(super) approval_paths: Vec<(String, String)>,
    /// Approval requests not yet approved: id and the write they hold.
    pub(super) pending_approvals: Vec<(String, Batch)>,

    pub(super) token_rows: HashMap<Uuid, TokenRow>,
    pub(super) jwts: HashMap<String, IssuedJwt>,
    pub(super) lockout: Lockout,

    pub(super) fail_next: HashMap<Uuid, String>,
    pub(super) drop_after_apply: HashSet<Uuid>,
    pub(super) simulated_locks: HashSet<Uuid>,
    pub(super) inflight: HashMap<Uuid, InflightLock>,
    pub(super) next_lock_token: u64,
    pub(super) denied: HashMap<Uuid, HashSet<String>>,
    pub(super) injections: HashMap<Route, VecDeque<Injection>>,

    pub(super) write_bucket: Bucket,
    pub(super) read_bucket: Bucket,

    pub(super) rotate_calls: HashMap<Uuid, usize>,
    pub(super) total_rotate_calls: usize,
    pub(super) login_calls: usize,
    pub(super) renew_calls: usize,
    pub(super) requests: VecDeque<RecordedRequest>,
    pub(super) last_resource_headers: Vec<(String, String)>,
}

impl State {
    pub(super) fn new(cfg: FakeConfig) -> Self {
        let environments: Vec<Environment> = ENVIRONMENTS
            .iter()
            .map(|(slug, name)| Environment {
                slug: slug.to_string(),
                name: name.to_string(),
                id: Uuid::new_v4(),
            })
            .collect();
        let mut st = State {
            cfg,
            environments,
            folders: Vec::new(),
            rotations: Vec::new(),
            secrets: Vec::new(),
            approval_paths: Vec::new(),
            pending_approvals: Vec::new(),
            token_rows: HashMap::new(),
            jwts: HashMap::new(),
            lockout: Lockout::default(),
            fail_next: HashMap::new(),
            drop_after_apply: HashSet::new(),
            simulated_locks: HashSet::new(),
            inflight: HashMap::new(),
            next_lock_token: 0,
            denied: HashMap::new(),
            injections: HashMap::new(),
            write_bucket: Bucket::default(),
            read_bucket: Bucket::default(),
            rotate_calls: HashMap::new(),
            total_rotate_calls: 0,
            login_calls: 0,
            renew_calls: 0,
            requests: VecDeque::new(),
            last_resource_headers: Vec::new(),
        };
        // Every environment has a root folder.
        for (slug, _) in ENVIRONMENTS {
            st.folder_or_create(slug, "/");
        }
        let base = Utc
            .with_ymd_and_hms(2025, 1, 10, 5, 0, 0)
            .single()
            .unwrap_or_else(Utc::now);
        for (i, seed) in SEEDS.iter().enumerate() {
            if !st.type_supported(seed.slug) {
                continue;
            }
            // Creation times a day and 7 minutes apart, so rows are distinguishable.
            let created = base + chrono::Duration::minutes(i as i64 * (24 * 60 + 7));
            st.seed_rotation(seed, seed.name, created, None);
        }
        st
    }

    pub(super) fn type_supported(&self, slug: &str) -> bool {
        self.cfg.supported_types.iter().any(|t| t == slug)
    }

    pub(super) fn folder_or_create(&mut self, env_slug: &str, path: &str) -> Folder {
        if let Some(f) = self
            .folders
            .iter()
            .find(|f| f.env_slug == env_slug && f.path == path)
        {
            return f.clone();
        }
        let f = Folder {
            id: Uuid::new_v4().to_string(),
            env_slug: env_slug.into(),
            path: path.into(),
        };
        self.folders.push(f.clone());
        f
    }

    /// Insert a rotation "as created": 1 generated credential, status success, manual.
    pub(super) fn seed_rotation(
        &mut self,
        seed: &SeedSpec,
        name: &str,
        created: DateTime<Utc>,
        connection: Option<Connection>,
    ) -> Uuid {
        let Some(ti) = type_info(seed.slug) else {
            return Uuid::nil();
        };
        let folder = self.folder_or_create(seed.env, seed.path);
        let environment = self
            .environments
            .iter()
            .find(|e| e.slug == seed.env)
            .cloned()
            .unwrap_or_else(|| Environment {
                slug: seed.env.into(),
                name: seed.env.into(),
                id: Uuid::new_v4(),
            });
        let parameters = seed_parameters(seed.slug);
        let first = generate_credential(seed.slug, &parameters, 0);
        let mut rot = Rotation {
            id: Uuid::new_v4(),
            name: name.to_string(),
            description: seed.description.map(str::to_string),
            is_auto_rotation_enabled: seed.auto_rotation,
            active_index: 0,
            folder,
            connection: connection.unwrap_or_else(|| Connection {
                app: ti.app,
                name: seed.connection_name.to_string(),
                id: Uuid::new_v4(),
            }),
            created_at: created,
            updated_at: created,
            rotation_interval: seed.interval_days,
            rotation_status: "success",
            last_rotation_attempted_at: created,
            last_rotated_at: created,
            last_rotation_job_id: None,
            next_rotation_at: None,
            is_last_rotation_manual: true,
            environment,
            project_id: PROJECT_ID.to_string(),
            rotate_at_utc: seed.rotate_at,
            last_rotation_message: None,
            type_slug: ti.slug,
            parameters,
            secrets_mapping: default_secrets_mapping(ti),
            generated_credentials: vec![first],
        };
        rot.recompute_next_rotation_at(created);
        let id = rot.id;
        self.rotations.push(rot);
        id
    }

    pub(super) fn rotation(&self, id: Uuid) -> Option<&Rotation> {
        self.rotations.iter().find(|r| r.id == id)
    }

    pub(super) fn rotation_mut(&mut self, id: Uuid) -> Option<&mut Rotation> {
        self.rotations.iter_mut().find(|r| r.id == id)
    }

    pub(super) fn is_denied(&self, id: Uuid, action: &str) -> bool {
        self.denied.get(&id).is_some_and(|s| s.contains(action))
    }

    pub(super) fn lock_held(&self, id: Uuid, now: Instant) -> bool {
        self.simulated_locks.contains(&id)
            || self
                .inflight
                .get(&id)
                .is_some_and(|l| now.duration_since(l.taken_at) < self.cfg.rotation_lock_ttl)
    }
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Live connections, so that a test can cut one (or shutdown can cut all).
    pub(super) connections: Mutex<HashMap<u64, Arc<ConnHandle>>>,
    pub(super) next_conn_id: AtomicU64,
}

pub(super) type App = Arc<Shared>;

impl Shared {
    pub(super) fn st(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn conns(&self) -> MutexGuard<'_, HashMap<u64, Arc<ConnHandle>>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }
}
