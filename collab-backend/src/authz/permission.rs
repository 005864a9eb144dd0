//! The permission catalogue and the built-in roles.

/// Every permission a role can hold. Custom roles pick from this list; anything else is
/// rejected (400, field `permissions`).
pub const ALL: &[&str] = &[
    "workspace.read",
    "workspace.manage",
    "task.create",
    "task.update",
    "task.delete",
    "comment.create",
    "comment.moderate",
    "file.create",
    "file.update",
    "file.delete",
    "file.share",
    "mention.all",
    "member.manage",
    "org.manage",
    "role.manage",
    "audit.read",
];

/// The built-in roles, lowest first; each extends the one before it.
pub const BUILTIN_ROLES: &[&str] = &["guest", "member", "admin", "owner"];

/// Whether `name` is in the catalogue.
pub fn is_known(name: &str) -> bool {
    ALL.contains(&name)
}

/// What a built-in role adds to the role it extends; `None` for a custom role id.
pub fn builtin_grants(role_id: &str) -> Option<&'static [&'static str]> {
    match role_id {
        "guest" => Some(&["workspace.read", "comment.create"]),
        "member" => Some(&[
            "task.create",
            "task.update",
            "file.create",
            "file.update",
            "file.share",
        ]),
        "admin" => Some(&[
            "task.delete",
            "file.delete",
            "comment.moderate",
            "workspace.manage",
            "member.manage",
            "mention.all",
            "org.manage",
            "audit.read",
        ]),
        "owner" => Some(&["role.manage"]),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_only_use_known_permissions() {
        for role in BUILTIN_ROLES {
            for permission in builtin_grants(role).unwrap_or_default() {
                assert!(is_known(permission), "{role}: {permission}");
            }
        }
        assert!(builtin_grants("custom").is_none());
    }
}
