//! Grafana roles: shared by the configuration (route steps name roles) and the directory
//! (each user has one), so it depends on no other module of this crate.

use serde::{Deserialize, Serialize};

/// A user's role, named as Grafana Cloud names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Grafana admin (role 0).
    Admin,
    /// Grafana editor (role 1); the original called it `user`.
    Editor,
    /// Grafana viewer (role 2); the original called it `observer`.
    Viewer,
    /// No Grafana role (role 3).
    None,
}

/// A role name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not one of admin, editor (user), viewer (observer), none")]
pub struct UnknownRole(pub String);

impl Role {
    /// Parses a role name, accepting the original's names.
    pub fn parse(raw: &str) -> Result<Role, UnknownRole> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "admin" | "0" => Ok(Role::Admin),
            "editor" | "user" | "1" => Ok(Role::Editor),
            "viewer" | "observer" | "2" => Ok(Role::Viewer),
            "none" | "3" => Ok(Role::None),
            other => Err(UnknownRole(other.to_string())),
        }
    }

    /// The cloud API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Editor => "editor",
            Role::Viewer => "viewer",
            Role::None => "none",
        }
    }

    /// The numeric code used by the `roles` query parameter.
    pub fn code(self) -> u8 {
        match self {
            Role::Admin => 0,
            Role::Editor => 1,
            Role::Viewer => 2,
            Role::None => 3,
        }
    }

    /// The role for a `roles` query value.
    pub fn from_code(code: &str) -> Option<Role> {
        match code.trim() {
            "0" => Some(Role::Admin),
            "1" => Some(Role::Editor),
            "2" => Some(Role::Viewer),
            "3" => Some(Role::None),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_accept_original_names() {
        assert_eq!(Role::parse("user").expect("ok"), Role::Editor);
        assert_eq!(Role::parse("observer").expect("ok"), Role::Viewer);
        assert_eq!(Role::parse("ADMIN").expect("ok"), Role::Admin);
        assert!(Role::parse("root").is_err());
    }
}
