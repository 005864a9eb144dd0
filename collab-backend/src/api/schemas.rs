//! Every schema the OpenAPI document names, registered once.

use utoipa::ToSchema;
use utoipa::openapi::ComponentsBuilder;

/// The error body every failure carries.
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct Error {
    error: ErrorFields,
}

/// `error` of [`Error`].
#[derive(Debug, serde::Serialize, ToSchema)]
pub(crate) struct ErrorFields {
    code: String,
    message: String,
    request_id: Option<String>,
}

pub(super) fn register(builder: ComponentsBuilder) -> ComponentsBuilder {
    use crate::store::{audit, comments, grants, orgtree, roles, tasks, tokens, users};
    builder
        .schema_from::<Error>()
        .schema_from::<ErrorFields>()
        .schema_from::<super::health::Health>()
        .schema_from::<super::organizations::OrganizationBody>()
        .schema_from::<super::organizations::CreateOrganization>()
        .schema_from::<users::User>()
        .schema_from::<tokens::TokenInfo>()
        .schema_from::<grants::Grant>()
        .schema_from::<roles::Role>()
        .schema_from::<orgtree::Department>()
        .schema_from::<orgtree::Team>()
        .schema_from::<orgtree::Workspace>()
        .schema_from::<audit::AuditEntry>()
        .schema_from::<super::auth::Register>()
        .schema_from::<super::auth::NewUser>()
        .schema_from::<super::auth::SignIn>()
        .schema_from::<super::auth::Session>()
        .schema_from::<super::auth::Me>()
        .schema_from::<super::auth::NewToken>()
        .schema_from::<super::auth::CreatedToken>()
        .schema_from::<super::orgtree::NewDepartment>()
        .schema_from::<super::orgtree::DepartmentPatch>()
        .schema_from::<super::orgtree::NewTeam>()
        .schema_from::<super::orgtree::TeamPatch>()
        .schema_from::<super::orgtree::NewMember>()
        .schema_from::<super::orgtree::NewWorkspace>()
        .schema_from::<super::orgtree::WorkspacePatch>()
        .schema_from::<super::roles::NewRole>()
        .schema_from::<super::roles::NewGrant>()
        .schema_from::<tasks::Task>()
        .schema_from::<super::tasks::NewTask>()
        .schema_from::<super::tasks::TaskPatch>()
        .schema_from::<super::workload::Workload>()
        .schema_from::<comments::Comment>()
        .schema_from::<comments::ReactionSummary>()
        .schema_from::<comments::CommentEdit>()
        .schema_from::<super::comments::NewComment>()
        .schema_from::<super::comments::CommentPatch>()
        .schema_from::<super::comments::NewReaction>()
        .schema_from::<crate::store::notifications::Notification>()
        .schema_from::<super::notifications::UnreadCount>()
        .schema_from::<super::notifications::MarkRead>()
        .schema_from::<super::notifications::MarkedRead>()
        .schema_from::<super::notifications::Channels>()
        .schema_from::<super::notifications::Preferences>()
        .schema_from::<super::notifications::PreferencesPatch>()
        .schema_from::<super::notifications::ChannelsPatch>()
        .schema_from::<super::ws::WsTicket>()
        .schema_from::<super::email::EmailPreview>()
        .schema_from::<crate::store::files::File>()
        .schema_from::<crate::store::files::FileVersion>()
        .schema_from::<crate::store::files::FileShare>()
        .schema_from::<super::files::NewFileShare>()
}
