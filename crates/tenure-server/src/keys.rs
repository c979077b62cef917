//! API keys: a secret shown once, stored only as its SHA-256 hash with its scopes, in
//! `DATA/keys.json`; verification compares hashes in constant time. The running service
//! reads the file again when it changes ([`KeyStore`]): `tenure key create` and `tenure key
//! revoke` take effect within a second, without a restart.

use crate::notify::hex;
use crate::users::{Role, User};
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
    #[error("{0}")]
    Invalid(String),
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// Equal without an early exit: the time does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The keys of a data directory, and the people who log in ([`crate::users`]).
#[derive(Clone, Debug, Default)]
pub struct Keys {
    pub keys: Vec<Key>,
    pub users: Vec<User>,
}

/// The file: `{"keys": [...], "users": [...]}` (a bare array of keys is the older form).
#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    Keys(Vec<Key>),
    Both {
        #[serde(default)]
        keys: Vec<Key>,
        #[serde(default)]
        users: Vec<User>,
    },
}

#[derive(Serialize)]
struct FileOut<'a> {
    keys: &'a [Key],
    users: &'a [User],
}

/// A valid argon2id hash of a random password: a login for an unknown email costs what a
/// wrong password does, so the time does not tell which emails exist.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$HhOeTfyGq5uisRNRu5bHzA$p/dSRkCG4j8W2rd4AxIMDwmpBPNhD6OfZam0hGLIKoU";

impl Keys {
    pub fn path(data: &Path) -> PathBuf {
        data.join("keys.json")
    }

    pub fn load(data: &Path) -> Result<Keys, KeyError> {
        let p = Keys::path(data);
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                let file: File =
                    serde_json::from_str(&text).map_err(|e| KeyError::Format(p, e.to_string()))?;
                Ok(match file {
                    File::Keys(keys) => Keys { keys, users: Vec::new() },
                    File::Both { keys, users } => Keys { keys, users },
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Keys::default()),
            Err(e) => Err(KeyError::Io(p, e)),
        }
    }

    /// Writes the file whole (a temporary file, readable by its owner only, renamed over
    /// it): password hashes are in it.
    pub fn save(&self, data: &Path) -> Result<(), KeyError> {
        let p = Keys::path(data);
        let tmp = p.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(&FileOut { keys: &self.keys, users: &self.users })
            .expect("keys serialise");
        let io = |e| KeyError::Io(p.clone(), e);
        std::fs::create_dir_all(data).map_err(io)?;
        let _ = std::fs::remove_file(&tmp);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        {
            use std::io::Write;
            let mut f = o.open(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &p).map_err(io)
    }

    /// Adds a person; the email is their login (unique, compared lower-case).
    pub fn add_user(
        &mut self,
        name: &str,
        email: &str,
        role: Role,
        team: Option<&str>,
        created: &str,
    ) -> Result<User, KeyError> {
        let email = email.trim().to_lowercase();
        if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
            return Err(KeyError::Invalid(format!("{email:?} is not an email address")));
        }
        if name.trim().is_empty() || name.len() > 200 {
            return Err(KeyError::Invalid("a name of 1 to 200 bytes is needed".into()));
        }
        if self.users.iter().any(|u| u.email == email) {
            return Err(KeyError::Invalid(format!("a user with the email {email} exists")));
        }
        let mut raw = [0u8; 6];
        getrandom::fill(&mut raw).map_err(|e| KeyError::Random(e.to_string()))?;
        let user = User {
            id: format!("u_{}", hex(&raw)),
            name: name.trim().to_string(),
            email,
            role,
            team: team.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string),
            aliases: Vec::new(),
            password: None,
            token: None,
            created: created.to_string(),
            disabled: false,
        };
        self.users.push(user.clone());
        Ok(user)
    }

    /// The user with this id or email.
    pub fn user_mut(&mut self, who: &str) -> Result<&mut User, KeyError> {
        let w = who.trim().to_lowercase();
        self.users
            .iter_mut()
            .find(|u| u.id == w || u.email == w)
            .ok_or_else(|| KeyError::Unknown(who.to_string()))
    }

    /// The active user with this id.
    pub fn user(&self, id: &str) -> Option<&User> {
        self.users.iter().find(|u| u.id == id && !u.disabled)
    }

    /// The active user whose email and password these are. Unknown emails cost one hash
    /// check too.
    pub fn login(&self, email: &str, password: &str) -> Option<&User> {
        let email = email.trim().to_lowercase();
        let u = self.users.iter().find(|u| u.email == email && !u.disabled);
        let phc = u.and_then(|u| u.password.as_deref()).unwrap_or(DUMMY_HASH);
        let ok = crate::users::check_password(phc, password);
        u.filter(|u| ok && u.password.is_some())
    }

    /// A new personal API token for the user (replacing any earlier one); returns it.
    pub fn new_token(&mut self, who: &str) -> Result<String, KeyError> {
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| KeyError::Random(e.to_string()))?;
        let secret = format!("tnu_{}", hex(&raw));
        self.user_mut(who)?.token = Some(hex(&hash(&secret)));
        Ok(secret)
    }

    /// The active user whose personal token this is.
    pub fn verify_token(&self, secret: &str) -> Option<&User> {
        let h = hex(&hash(secret));
        let mut found = None;
        for u in &self.users {
            if let Some(t) = &u.token
                && same(t.as_bytes(), h.as_bytes())
                && !u.disabled
            {
                found = Some(u);
            }
        }
        found
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
    /// A user's id counts too, with their role's scopes.
    pub fn allows(&self, id: &str, scope: Scope) -> bool {
        self.keys.iter().any(|k| k.id == id && k.allows(scope))
            || self.user(id).is_some_and(|u| {
                let s = u.role.scopes();
                s.contains(&scope) || s.contains(&Scope::Admin)
            })
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

#[cfg(test)]
mod user_tests {
    use super::*;

    #[test]
    fn the_dummy_hash_is_a_real_one_so_unknown_emails_cost_a_check() {
        use argon2::password_hash::PasswordHash;
        let h = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(h.algorithm.as_str(), "argon2id");
        assert!(!crate::users::check_password(DUMMY_HASH, ""));
    }

    #[test]
    fn users_log_in_by_email_and_password_and_tokens_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Keys::default();
        let u =
            k.add_user("Sam", " Sam@Acme.test ", Role::Csm, Some("east"), "2026-01-01").unwrap();
        assert_eq!(u.email, "sam@acme.test");
        assert!(k.add_user("Other", "sam@acme.test", Role::Viewer, None, "x").is_err(), "unique");
        assert!(k.add_user("Bad", "not-an-email", Role::Viewer, None, "x").is_err());
        assert!(k.login("sam@acme.test", "whatever password").is_none(), "no password yet");
        k.user_mut("SAM@acme.test").unwrap().password =
            Some(crate::users::hash_password("a long enough passphrase").unwrap());
        let token = k.new_token("sam@acme.test").unwrap();
        k.save(dir.path()).unwrap();
        // Readable by its owner only: password hashes are in it.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(Keys::path(dir.path())).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let k = Keys::load(dir.path()).unwrap();
        assert_eq!(
            k.login("sam@acme.test", "a long enough passphrase").map(|u| &u.id),
            Some(&u.id)
        );
        assert!(k.login("sam@acme.test", "a long enough passphrase!").is_none());
        assert_eq!(k.verify_token(&token).map(|u| &u.id), Some(&u.id));
        assert!(k.verify_token("tnu_00").is_none());
        assert!(k.allows(&u.id, Scope::Write) && !k.allows(&u.id, Scope::Admin));
        // The older file, a bare array of keys, still reads.
        std::fs::write(Keys::path(dir.path()), "[]").unwrap();
        assert!(Keys::load(dir.path()).unwrap().users.is_empty());
    }
}
