//! The collaboration model and its rules, free of HTTP and SQL: what a valid
//! organization is, how a slug is derived, what a task field may hold. Later resources (users, workspaces, tasks…)
//! get a sibling module each.

pub mod file;
pub mod mention;
pub mod organization;
pub mod task;

/// A rejected input value: which field, and a message fit for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The request field at fault, as the client spelled it.
    pub field: &'static str,
    /// What is wrong and what is expected.
    pub message: String,
}

impl ValidationError {
    pub(crate) fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}
