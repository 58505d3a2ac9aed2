//! Permissions and the built-in roles.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

/// What a principal may do. `Admin` implies every other permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    /// Search and read audit events (masked).
    AuditRead,
    /// Send audit events (API keys with the ingest scope).
    AuditIngest,
    /// Export audit events.
    AuditExport,
    /// Run and read integrity verification.
    AuditVerify,
    /// See masked values in clear (each unmask is audited).
    AuditUnmask,
    /// Generate compliance reports and evidence.
    ReportGenerate,
    /// Manage masking and classification policies.
    PolicyManage,
    /// Read policies, their versions, proposals and trail.
    PolicyRead,
    /// Approve or reject other people's policy proposals.
    PolicyApprove,
    /// Manage alert rules.
    AlertManage,
    /// Manage notification channels and read the notification log.
    NotificationManage,
    /// Manage SIEM destinations.
    SiemManage,
    /// Manage retention and legal hold.
    RetentionManage,
    /// Manage users, roles and API keys.
    UserManage,
    /// Everything.
    Admin,
}

/// A permission name that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission `{0}`")]
pub struct UnknownPermission(pub String);

impl Permission {
    /// Every permission, in display order.
    pub const ALL: [Permission; 15] = [
        Permission::AuditRead,
        Permission::AuditIngest,
        Permission::AuditExport,
        Permission::AuditVerify,
        Permission::AuditUnmask,
        Permission::ReportGenerate,
        Permission::PolicyManage,
        Permission::PolicyRead,
        Permission::PolicyApprove,
        Permission::AlertManage,
        Permission::NotificationManage,
        Permission::SiemManage,
        Permission::RetentionManage,
        Permission::UserManage,
        Permission::Admin,
    ];

    /// The stable name, e.g. `audit:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::AuditRead => "audit:read",
            Permission::AuditIngest => "audit:ingest",
            Permission::AuditExport => "audit:export",
            Permission::AuditVerify => "audit:verify",
            Permission::AuditUnmask => "audit:unmask",
            Permission::ReportGenerate => "report:generate",
            Permission::PolicyManage => "policy:manage",
            Permission::PolicyRead => "policy:read",
            Permission::PolicyApprove => "policy:approve",
            Permission::AlertManage => "alert:manage",
            Permission::NotificationManage => "notification:manage",
            Permission::SiemManage => "siem:manage",
            Permission::RetentionManage => "retention:manage",
            Permission::UserManage => "user:manage",
            Permission::Admin => "admin",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Result<Permission, UnknownPermission> {
        Permission::ALL.into_iter().find(|p| p.as_str() == s).ok_or_else(|| UnknownPermission(s.to_owned()))
    }

    /// One line for people.
    pub fn describe(self) -> &'static str {
        match self {
            Permission::AuditRead => "Search and read audit events (masked)",
            Permission::AuditIngest => "Send audit events",
            Permission::AuditExport => "Export audit events",
            Permission::AuditVerify => "Run integrity verification",
            Permission::AuditUnmask => "See masked values (audited)",
            Permission::ReportGenerate => "Generate compliance reports",
            Permission::PolicyManage => "Propose masking policy changes",
            Permission::PolicyRead => "Read policies and their trail",
            Permission::PolicyApprove => "Approve others' policy proposals",
            Permission::AlertManage => "Manage alert rules",
            Permission::NotificationManage => "Manage notifications",
            Permission::SiemManage => "Manage SIEM destinations",
            Permission::RetentionManage => "Manage retention, legal holds, archives and backups",
            Permission::UserManage => "Manage users, roles and API keys",
            Permission::Admin => "Everything",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    /// From a list.
    pub fn of(perms: &[Permission]) -> Self {
        PermissionSet(perms.iter().copied().collect())
    }

    /// Parses the stored form: names separated by spaces.
    pub fn parse(text: &str) -> Result<Self, UnknownPermission> {
        text.split_whitespace().map(Permission::parse).collect::<Result<_, _>>().map(PermissionSet)
    }

    /// The stored form.
    pub fn to_text(&self) -> String {
        self.0.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(" ")
    }

    /// Whether `p` is granted (directly or by `admin`).
    pub fn allows(&self, p: Permission) -> bool {
        self.0.contains(&p) || self.0.contains(&Permission::Admin)
    }

    /// Adds every permission of `other`.
    pub fn extend(&mut self, other: &PermissionSet) {
        self.0.extend(other.0.iter().copied());
    }

    /// The permissions, in order.
    pub fn iter(&self) -> impl Iterator<Item = Permission> + '_ {
        self.0.iter().copied()
    }

    /// Whether no permission is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The permissions of this set that `holder` does not have (empty when
    /// `holder` covers them all, as an admin covers everything).
    pub fn not_held_by(&self, holder: &PermissionSet) -> Vec<Permission> {
        self.0.iter().copied().filter(|p| !holder.allows(*p)).collect()
    }
}

/// A role shipped with Custos (recreated if missing, never deleted).
#[derive(Debug, Clone, Copy)]
pub struct BuiltinRole {
    /// Stable name.
    pub name: &'static str,
    /// One line for people.
    pub description: &'static str,
    /// What it grants.
    pub permissions: &'static [Permission],
}

/// The built-in roles.
pub const BUILTIN_ROLES: [BuiltinRole; 7] = [
    BuiltinRole {
        name: "admin",
        description: "Full access, including users, roles and keys",
        permissions: &[Permission::Admin],
    },
    BuiltinRole {
        name: "compliance_officer",
        description: "Reads, exports and verifies the audit log; generates reports",
        permissions: &[
            Permission::AuditRead,
            Permission::AuditExport,
            Permission::AuditVerify,
            Permission::ReportGenerate,
            Permission::PolicyRead,
        ],
    },
    BuiltinRole {
        name: "security_analyst",
        description: "Reads the audit log, manages alerts and alert rules",
        permissions: &[Permission::AuditRead, Permission::AlertManage, Permission::PolicyRead],
    },
    BuiltinRole {
        name: "notification_manager",
        description: "Manages notification channels and reads their delivery log",
        permissions: &[Permission::NotificationManage, Permission::PolicyRead],
    },
    BuiltinRole {
        name: "siem_manager",
        description: "Manages SIEM forwarding destinations (previews show masked events)",
        permissions: &[Permission::SiemManage, Permission::PolicyRead, Permission::AuditRead],
    },
    BuiltinRole {
        name: "records_manager",
        description: "Manages retention, legal holds, archives and backups",
        permissions: &[Permission::RetentionManage, Permission::PolicyRead, Permission::AuditRead],
    },
    BuiltinRole { name: "viewer", description: "Reads the audit log, masked", permissions: &[Permission::AuditRead] },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_admin_implies_everything() {
        for p in Permission::ALL {
            assert_eq!(Permission::parse(p.as_str()), Ok(p));
        }
        assert!(Permission::parse("audit:delete").is_err());
        let admin = PermissionSet::of(&[Permission::Admin]);
        assert!(Permission::ALL.iter().all(|p| admin.allows(*p)));
        let viewer = PermissionSet::parse("audit:read").unwrap();
        assert!(viewer.allows(Permission::AuditRead) && !viewer.allows(Permission::AuditUnmask));
        assert_eq!(PermissionSet::parse(&viewer.to_text()).unwrap(), viewer);
    }
}
