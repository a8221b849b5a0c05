use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{MachineName, UserName};

/// What a person may do. A user holds one or more roles.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Requests access, opens sessions through the bastion.
    Engineer,
    /// Reviews access requests, reads the well-log, owns the firewall policy.
    Security,
    /// Manages users and machine identities.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Engineer, Role::Security, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Engineer => "engineer",
            Role::Security => "security",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| format!("unknown role {s:?} (expected engineer, security or admin)"))
    }
}

/// A non-empty set of roles, kept sorted so that it stores and prints the same
/// way every time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "Vec<Role>", into = "Vec<Role>")]
#[schema(value_type = Vec<Role>)]
pub struct Roles(BTreeSet<Role>);

impl Roles {
    pub fn new(roles: impl IntoIterator<Item = Role>) -> Result<Self, String> {
        let set: BTreeSet<Role> = roles.into_iter().collect();
        if set.is_empty() {
            return Err("a user needs at least one role".to_owned());
        }
        Ok(Roles(set))
    }

    pub fn contains(&self, role: Role) -> bool {
        self.0.contains(&role)
    }

    pub fn iter(&self) -> impl Iterator<Item = Role> + '_ {
        self.0.iter().copied()
    }

    /// The storage form: role names joined by commas, e.g. `admin,security`.
    pub fn to_csv(&self) -> String {
        self.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
    }

    pub fn from_csv(csv: &str) -> Result<Self, String> {
        Roles::new(
            csv.split(',')
                .map(str::parse)
                .collect::<Result<Vec<Role>, _>>()?,
        )
    }
}

impl TryFrom<Vec<Role>> for Roles {
    type Error = String;
    fn try_from(roles: Vec<Role>) -> Result<Self, String> {
        Roles::new(roles)
    }
}

impl From<Roles> for Vec<Role> {
    fn from(roles: Roles) -> Vec<Role> {
        roles.0.into_iter().collect()
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_csv())
    }
}

/// What a machine identity is for. It decides which machine-only routes it may
/// call (the grant check for bastions, state reports for agents, ...).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum MachineRole {
    Bastion,
    Agent,
    Gateway,
}

impl MachineRole {
    pub const ALL: [MachineRole; 3] = [
        MachineRole::Bastion,
        MachineRole::Agent,
        MachineRole::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MachineRole::Bastion => "bastion",
            MachineRole::Agent => "agent",
            MachineRole::Gateway => "gateway",
        }
    }
}

impl fmt::Display for MachineRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MachineRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        MachineRole::ALL
            .into_iter()
            .find(|role| role.as_str() == s)
            .ok_or_else(|| {
                format!("unknown machine role {s:?} (expected bastion, agent or gateway)")
            })
    }
}

/// Who a request was authenticated as. Only the server's authentication layer
/// builds one, from a valid token or a valid, unrevoked client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Identity {
    User {
        name: UserName,
        roles: Roles,
    },
    Machine {
        name: MachineName,
        role: MachineRole,
    },
}

impl Identity {
    /// The form used as `actor` in the well-log: `alice` or `machine:bastion-1`.
    pub fn actor(&self) -> String {
        match self {
            Identity::User { name, .. } => name.to_string(),
            Identity::Machine { name, .. } => format!("machine:{name}"),
        }
    }

    pub fn has_role(&self, role: Role) -> bool {
        matches!(self, Identity::User { roles, .. } if roles.contains(role))
    }

    pub fn is_machine(&self, role: MachineRole) -> bool {
        matches!(self, Identity::Machine { role: r, .. } if *r == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_storage_form() {
        let roles = Roles::new([Role::Security, Role::Admin, Role::Security]).unwrap();
        assert_eq!(roles.to_csv(), "security,admin");
        assert_eq!(Roles::from_csv("security,admin").unwrap(), roles);
        assert!(Roles::from_csv("").is_err());
        assert!(Roles::from_csv("root").is_err());
        assert!(Roles::new([]).is_err());
    }

    #[test]
    fn roles_refuse_empty_lists_in_json() {
        assert!(serde_json::from_str::<Roles>("[]").is_err());
        assert!(serde_json::from_str::<Roles>("[\"wizard\"]").is_err());
        let roles: Roles = serde_json::from_str("[\"admin\"]").unwrap();
        assert!(roles.contains(Role::Admin));
    }

    #[test]
    fn actor_names_machines_apart_from_users() {
        let machine = Identity::Machine {
            name: "bastion-1".parse().unwrap(),
            role: MachineRole::Bastion,
        };
        assert_eq!(machine.actor(), "machine:bastion-1");
        assert!(!machine.has_role(Role::Admin));
        assert!(machine.is_machine(MachineRole::Bastion));
        let user = Identity::User {
            name: "alice".parse().unwrap(),
            roles: Roles::new([Role::Admin]).unwrap(),
        };
        assert_eq!(user.actor(), "alice");
        assert!(user.has_role(Role::Admin));
        assert!(!user.has_role(Role::Security));
    }
}
