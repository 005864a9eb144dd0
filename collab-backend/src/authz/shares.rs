//! Per-file permissions on top of the workspace's: a file can be shared with a user or
//! with every reader of another workspace (of the same organization), for `read` or
//! `write`, optionally with `reshare`.
//!
//! What a share adds on its file: `read` → [`FILE_READ`]; `write` → also `file.update`;
//! `reshare` → also `file.share`. Readers of the file's own workspace hold
//! [`FILE_READ`] there, and their role's `file.*` permissions. Sharing needs
//! `file.share` and can never grant more than the sharer holds: `write` needs
//! `file.update`; so a reader with `reshare` can only pass on `read`.

use std::collections::BTreeSet;

use uuid::Uuid;

use crate::Db;
use crate::auth::Caller;
use crate::store::{self, StoreError};

/// "May read this file": held by readers of its workspace and by its share holders.
/// Derived, never granted to a role.
pub const FILE_READ: &str = "file.read";

/// What `caller` holds on `file` through its workspace (`held`, already computed) and
/// through its shares.
pub async fn share_permissions(
    db: &Db,
    caller: &Caller,
    file: Uuid,
    held: &BTreeSet<String>,
) -> Result<BTreeSet<String>, StoreError> {
    let mut added = BTreeSet::new();
    if held.contains("workspace.read") {
        added.insert(FILE_READ.to_owned());
    }
    for share in store::files::shares(db, file).await? {
        let applies = match share.target_kind.as_str() {
            "user" => share.target_id == caller.user_id,
            // Boxed: this asks `visible` again (for the workspace), which got here.
            "workspace" => {
                let reads =
                    super::can_read_workspace(db, caller.user_id, caller.org_id, share.target_id);
                Box::pin(reads).await?
            }
            _ => false,
        };
        if !applies {
            continue;
        }
        added.insert(FILE_READ.to_owned());
        if share.access == "write" {
            added.insert("file.update".to_owned());
        }
        if share.reshare {
            added.insert("file.share".to_owned());
        }
    }
    Ok(added)
}
