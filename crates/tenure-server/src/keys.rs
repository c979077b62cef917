//! API keys: a secret shown once, stored only as its SHA-256 hash with its scopes, in
//! `DATA/keys.json`; verification compares hashes in constant time. The running service
//! reads the file again when it changes ([`KeyStore`]): `tenure key create` and `tenure key
//! revoke` take effect within a second, without a restart.

use crate::notify::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read accounts, KPIs, alerts, tasks.
    Read,
    /// Change tasks (assign, comment, change status, resolve), through the API or the
    /// dashboard; the change is recorded under the key's name.
    Write,
    /// Everything, key management included.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    /// A short public id (shown in lists and logs; never the secret).
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    /// SHA-256 of the secret, hex.
    pub hash: String,
    pub created: String,
    #[serde(default)]
    pub revoked: bool,
}

impl Key {
    /// Who acts with this key: its name, or its id when it has none (the author of the task
    /// changes made with it).
    pub fn identity(&self) -> &str {
        if self.name.trim().is_empty() { &self.id } else { &self.name }
    }

    pub fn allows(&self, s: Scope) -> bool {
        !self.revoked && (self.scopes.contains(&s) || self.scopes.contains(&Scope::Admin))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("{0}: {1}")]
    Format(PathBuf, String),
    #[error("no key {0:?}")]
    Unknown(String),
    #[error("no source of randomness: {0}")]
    Random(String),
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equal without an early exit: the time does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys of a data directory.
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub keys: Vec<Key>,
}

impl Keys {
    pub fn path(data: &Path) -> PathBuf {
        data.join("keys.json")
    }

    pub fn load(data: &Path) -> Result<Keys, KeyError> {
        let p = Keys::path(data);
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                let keys =
                    serde_json::from_str(&text).map_err(|e| KeyError::Format(p, e.to_string()))?;
                Ok(Keys { keys })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keys::default()),
            Err(e) => Err(KeyError::Io(p, e)),
        }
    }

    /// Writes the file whole (a temporary file renamed over it).
    pub fn save(&self, data: &Path) -> Result<(), KeyError> {
        let p = Keys::path(data);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&self.keys).expect("keys serialise");
        let io = |e| KeyError::Io(p.clone(), e);
        std::fs::create_dir_all(data).map_err(io)?;
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, &p).map_err(io)
    }

    /// Adds a key; returns it and its secret (which is not kept).
    pub fn create(
        &mut self,
        name: &str,
        scopes: &[Scope],
        created: &str,
    ) -> Result<(Key, String), KeyError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| KeyError::Random(e.to_string()))?;
        let secret = format!("tnr_{}", hex(&raw));
        let id = hex(&hash(&secret)[..6]);
        let key = Key {
            id,
            name: name.to_string(),
            scopes: scopes.to_vec(),
            hash: hex(&hash(&secret)),
            created: created.to_string(),
            revoked: false,
        };
        self.keys.push(key.clone());
        Ok((key, secret))
    }

    pub fn revoke(&mut self, id: &str) -> Result<(), KeyError> {
        let k = self
            .keys
            .iter_mut()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::Unknown(id.to_string()))?;
        k.revoked = true;
        Ok(())
    }

    /// Whether the key with this id exists, is not revoked and has `scope` (a session's
    /// key checked again on each request).
    pub fn allows(&self, id: &str, scope: Scope) -> bool {
        self.keys.iter().any(|k| k.id == id && k.allows(scope))
    }

    /// The key with this secret, if any and not revoked.
    pub fn verify(&self, secret: &str) -> Option<&Key> {
        let h = hex(&hash(secret));
        // Every key is compared, so the time does not tell which one matched.
        let mut found = None;
        for k in &self.keys {
            if same(k.hash.as_bytes(), h.as_bytes()) && !k.revoked {
                found = Some(k);
            }
        }
        found
    }
}

/// What identifies one version of the keys file: a rename gives a new inode, a write a new
/// length or modification time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
}

fn stamp(p: &Path) -> Result<Option<Stamp>, std::io::Error> {
    match std::fs::metadata(p) {
        Ok(m) => {
            #[cfg(unix)]
            let ino = std::os::unix::fs::MetadataExt::ino(&m);
            #[cfg(not(unix))]
            let ino = 0;
            Ok(Some(Stamp { ino, len: m.len(), modified: m.modified().ok() }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

struct Cached {
    keys: Arc<Keys>,
    stamp: Option<Stamp>,
    checked: Instant,
    /// The version of the file that could not be read (reported once, not per request).
    failed: Option<Option<Stamp>>,
}

/// The service's view of `DATA/keys.json`, read again when the file changes: at most
/// [`KeyStore::RECHECK`] after a change, the next request sees it. A file that cannot be
/// read or parsed leaves the keys as they were and is reported through `on_error` (the
/// CLI writes the file whole and renames it, so only a hand edit gets there).
pub struct KeyStore {
    data: PathBuf,
    cached: RwLock<Cached>,
    on_error: Box<dyn Fn(&KeyError) + Send + Sync>,
}

impl KeyStore {
    /// How long a check of the file holds.
    pub const RECHECK: Duration = Duration::from_millis(250);

    pub fn open(
        data: &Path,
        on_error: impl Fn(&KeyError) + Send + Sync + 'static,
    ) -> Result<KeyStore, KeyError> {
        let p = Keys::path(data);
        let st = stamp(&p).map_err(|e| KeyError::Io(p.clone(), e))?;
        let keys = Keys::load(data)?;
        Ok(KeyStore {
            data: data.to_path_buf(),
            cached: RwLock::new(Cached {
                keys: Arc::new(keys),
                stamp: st,
                checked: Instant::now(),
                failed: None,
            }),
            on_error: Box::new(on_error),
        })
    }

    /// The keys in force.
    pub fn get(&self) -> Arc<Keys> {
        let now = Instant::now();
        if let Ok(c) = self.cached.read()
            && now.duration_since(c.checked) < Self::RECHECK
        {
            return c.keys.clone();
        }
        let mut c = match self.cached.write() {
            Ok(c) => c,
            Err(p) => p.into_inner(),
        };
        if now.duration_since(c.checked) < Self::RECHECK {
            return c.keys.clone();
        }
        c.checked = now;
        let p = Keys::path(&self.data);
        let loaded = stamp(&p)
            .map_err(|e| KeyError::Io(p.clone(), e))
            .map(|st| if st == c.stamp { None } else { Some(st) })
            .and_then(|changed| match changed {
                None => Ok(None),
                Some(st) => Keys::load(&self.data).map(|k| Some((st, k))),
            });
        match loaded {
            Ok(None) => {}
            Ok(Some((st, keys))) => {
                c.keys = Arc::new(keys);
                c.stamp = st;
                c.failed = None;
            }
            Err(e) => {
                let st = stamp(&p).ok().flatten();
                if c.failed != Some(st) {
                    (self.on_error)(&e);
                    c.failed = Some(st);
                }
            }
        }
        c.keys.clone()
    }
}
