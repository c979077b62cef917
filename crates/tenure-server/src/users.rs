//! People who log in: users with a role (admin, manager, CSM, viewer), a team, a password
//! (argon2id; only its PHC hash is kept) and an optional personal API token (only its
//! SHA-256 is kept). They live in `DATA/keys.json` beside the machine keys, so that
//! `tenure user` changes take effect in a running service as `tenure key` changes do.
//!
//! A person sees a *book* of accounts ([`Principal`]): a CSM the accounts whose owner
//! attribute (`csm` by default) names them, a manager their team's books and their own,
//! admins and viewers every account. Only admins, managers and CSMs change things.

use crate::keys::Scope;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What a person may do and see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: every account, every change, users and keys.
    Admin,
    /// Their team's books (and their own): read and change.
    Manager,
    /// Their own book: read and change.
    Csm,
    /// Every account, read only.
    Viewer,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "manager" => Some(Role::Manager),
            "csm" => Some(Role::Csm),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Csm => "csm",
            Role::Viewer => "viewer",
        }
    }

    /// The scopes of the role, as a key's: what the routes check.
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Role::Admin => &[Scope::Admin],
            Role::Manager | Role::Csm => &[Scope::Read, Scope::Write],
            Role::Viewer => &[Scope::Read],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// A short public id (`u_` and 12 hex digits).
    pub id: String,
    pub name: String,
    /// The login, lower-case.
    pub email: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Other values of the owner attribute that mean this person (`grace.okafor`, say);
    /// the name, the email and the id always do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// The password's argon2id hash (PHC string); `None`: no password login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// SHA-256 of the personal API token, hex; `None`: no token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub created: String,
    #[serde(default)]
    pub disabled: bool,
}

impl User {
    /// The owner-attribute values that name this person, lower-case.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        [&self.name, &self.email, &self.id]
            .into_iter()
            .chain(&self.aliases)
            .map(|n| n.trim().to_lowercase())
            .filter(|n| !n.is_empty())
    }
}

/// Which accounts a caller sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// Every account: machine keys, admins, viewers.
    All,
    /// The accounts whose owner attribute is one of these (lower-case) names: a CSM's own,
    /// a manager's team's.
    Owners(BTreeSet<String>),
}

impl Principal {
    /// The book of `user` among `users` (a manager's team: the active users of the same
    /// team, the manager included).
    pub fn of(user: &User, users: &[User]) -> Principal {
        match user.role {
            Role::Admin | Role::Viewer => Principal::All,
            Role::Csm => Principal::Owners(user.names().collect()),
            Role::Manager => {
                let mut names: BTreeSet<String> = user.names().collect();
                if let Some(team) = user.team.as_deref().filter(|t| !t.trim().is_empty()) {
                    for u in users.iter().filter(|u| !u.disabled && u.team.as_deref() == Some(team))
                    {
                        names.extend(u.names());
                    }
                }
                Principal::Owners(names)
            }
        }
    }

    /// Whether an account whose owner attribute is `owner` is in the book.
    pub fn sees(&self, owner: Option<&str>) -> bool {
        match self {
            Principal::All => true,
            Principal::Owners(names) => {
                owner.is_some_and(|o| names.contains(o.trim().to_lowercase().as_str()))
            }
        }
    }

    pub fn is_all(&self) -> bool {
        matches!(self, Principal::All)
    }
}

/// The argon2id hash of a password, as a PHC string (salt and parameters included).
pub fn hash_password(password: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC hash `phc` (in constant time, inside argon2).
pub fn check_password(phc: &str, password: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc)
        .is_ok_and(|h| argon2::Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
}

/// A password the service accepts: 12 to 1,024 characters (long enough to resist guessing
/// offline should the file leak; bounded so that hashing cannot be made to cost more).
pub fn password_problem(p: &str) -> Option<String> {
    let n = p.chars().count();
    if n < 12 {
        return Some(format!("a password needs at least 12 characters (this one has {n})"));
    }
    if p.len() > 1024 {
        return Some("a password is at most 1,024 bytes".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, name: &str, role: Role, team: Option<&str>) -> User {
        User {
            id: id.into(),
            name: name.into(),
            email: format!("{}@acme.test", id),
            role,
            team: team.map(Into::into),
            aliases: Vec::new(),
            password: None,
            token: None,
            created: "2026-01-01".into(),
            disabled: false,
        }
    }

    #[test]
    fn books_follow_roles_and_teams() {
        let sam = user("u_sam", "Sam Lee", Role::Csm, Some("east"));
        let kim = User {
            aliases: vec!["kim.o".into()],
            ..user("u_kim", "Kim O", Role::Csm, Some("east"))
        };
        let old = User { disabled: true, ..user("u_old", "Old Hand", Role::Csm, Some("east")) };
        let ana = user("u_ana", "Ana", Role::Csm, Some("west"));
        let max = user("u_max", "Max", Role::Manager, Some("east"));
        let vic = user("u_vic", "Vic", Role::Viewer, None);
        let all = vec![sam.clone(), kim.clone(), old, ana.clone(), max.clone(), vic.clone()];
        let p = Principal::of(&sam, &all);
        assert!(p.sees(Some("sam lee")) && p.sees(Some(" SAM LEE ")) && p.sees(Some("u_sam")));
        assert!(!p.sees(Some("Kim O")) && !p.sees(None));
        let m = Principal::of(&max, &all);
        assert!(m.sees(Some("Sam Lee")) && m.sees(Some("kim.o")) && m.sees(Some("Max")));
        assert!(!m.sees(Some("Ana")), "another team");
        assert!(!m.sees(Some("Old Hand")), "a disabled member's accounts are not the team's");
        assert!(Principal::of(&vic, &all).sees(None));
        assert!(Principal::of(&ana, &all).sees(Some("ana")));
    }

    #[test]
    fn passwords_are_hashed_with_a_salt_and_checked() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert_ne!(h, hash_password("correct horse battery").unwrap(), "a new salt each time");
        assert!(check_password(&h, "correct horse battery"));
        assert!(!check_password(&h, "correct horse battery "));
        assert!(!check_password("not a hash", "x"));
        assert!(password_problem("short").is_some());
        assert!(password_problem(&"x".repeat(1025)).is_some());
        assert!(password_problem("twelve chars").is_none());
    }
}
