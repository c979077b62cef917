//! API keys: a secret shown once, stored only as its SHA-256 hash with its scopes, in
//! `DATA/keys.json`; verification compares hashes in constant time.

use crate::notify::hex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Send events.
    Ingest,
    /// Read accounts, KPIs, alerts.
    Read,
    /// Everything, key management included.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "ingest" => Some(Scope::Ingest),
            "read" => Some(Scope::Read),
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
