//! The proxy phases that run a route's Proxy-Wasm filter chain: the decisions filters
//! return (`Continue`, `Pause`, `Respond`) and their faults become what Pingora does.
//!
//! - Request headers (`request_filter`): the chain runs, waiting on this thread while a
//!   filter is paused for HTTP callouts; a local response is sent here and ends the
//!   request; a fault answers the JSON 500 `plugin_error`.
//! - Response headers (`response_filter`): the same, in reverse order; a local response
//!   or fault replaces the upstream's status, headers and body (the body in
//!   `response_body_filter`).
//!
//! - Request body, streamed: when every filter continued the headers, the body goes
//!   upstream chunk by chunk through the filters' `proxy_on_request_body` in
//!   `request_body_filter` (a `Pause` before the end buffers; at the end it waits or
//!   parks). A local answer there abandons the upstream request (`fail_to_proxy` sends
//!   it); a length change under a kept `content-length` fails the request.
//! - Request body, buffered: when a filter paused the headers for the body, the whole
//!   body is read here, before anything goes upstream, up to
//!   `server.plugins.max_buffered_body` (64 KiB at most; 413 JSON past it). Filters see it in one
//!   `proxy_on_request_body(end_of_stream = true)` call, may rewrite it, answer, or call
//!   out; `request_body_filter` then sends it in place of the original and
//!   `content-length` is corrected.
//! - Response body: streamed through the filters chunk by chunk in
//!   `response_body_filter`, which Pingora runs synchronously after the response header
//!   is queued. `Pause` there means buffer-then-flush: the filter's next call sees all it
//!   held, and the end of the stream flushes it. The upstream's `content-length` stays
//!   unless a filter removed it (then the body goes chunked), as in Envoy; a length
//!   change under a kept `content-length` closes the connection.
//!
//! Faults fail closed (500 JSON `plugin_error`) unless the route entry says
//! `on_error: continue`: the faulting filter is then skipped for the rest of the request
//! and the chain goes on; the fault is counted in `aistack_plugin_errors_total` either way.
//!
//! A filter that pauses with no HTTP call of its own to wait for parks the request (see
//! `wasm::park`) until another context of its VM resumes or answers it
//! (`proxy_set_effective_context` + `proxy_continue_stream` / `proxy_send_local_response`,
//! typically from the root context's `on_tick` or `on_http_call_response`), for at most
//! 30 s (then a plugin fault). The exception is a pause of the request headers by a filter
//! with a request-body callback while a body follows: that pause is for the body.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

use super::{Gateway, RequestCtx, local_header, respond};
use crate::config::limits::MAX_BUFFERED_BODY;
use crate::wasm::{CLOSE_STREAM_DETAILS, Decision};

impl Gateway {
    /// The request side of the chain. `Ok(true)`: a response was sent.
    pub(super) async fn request_filters(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<bool> {
        if ctx.filters.is_empty() {
            return Ok(false);
        }
        let end_of_stream = session.is_body_empty();
        ctx.request_had_length = session
            .req_header()
            .headers
            .contains_key(http::header::CONTENT_LENGTH);
        let decision = ctx
            .filters
            .request_headers(session.req_header_mut(), &ctx.info, end_of_stream)
            .await;
        let decision = match decision {
            // Every filter continued the headers: the body streams (request_body_filter).
            Ok(Decision::Continue) if ctx.filters.wants_request_body() && !end_of_stream => {
                let req = session.req_header();
                let kept = req.headers.contains_key(http::header::CONTENT_LENGTH);
                ctx.request_streaming = Some(kept.then_some((0, 0)));
                Ok(Decision::Continue)
            }
            // A filter paused the headers for the body: read it whole first.
            Ok(Decision::Pause) if ctx.filters.wants_request_body() && !end_of_stream => {
                let limit = ctx.snapshot.as_ref().map_or(MAX_BUFFERED_BODY, |s| {
                    s.config.server.plugins.max_buffered_body
                });
                match read_body(session, limit).await? {
                    Some(body) => self.request_body_filters(session, ctx, body).await,
                    None => {
                        return self
                            .reply_error(session, ctx, &respond::PAYLOAD_TOO_LARGE)
                            .await;
                    }
                }
            }
            other => other,
        };
        self.apply(session, ctx, decision).await
    }

    /// Runs the request-body callbacks on the whole body; keeps what they leave for
    /// `request_body_filter`.
    async fn request_body_filters(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        original: Bytes,
    ) -> Result<Decision, crate::wasm::PluginFault> {
        let mut body = original.to_vec();
        let decision = ctx
            .filters
            .request_body(session.req_header_mut(), &mut body, &ctx.info)
            .await?;
        if body != original {
            let req = session.req_header_mut();
            req.remove_header(&http::header::TRANSFER_ENCODING);
            // A length always fits a header value.
            let _ = req.insert_header(http::header::CONTENT_LENGTH, body.len());
        }
        ctx.info.request_size = Some(body.len() as u64);
        ctx.request_body = Some(Bytes::from(body));
        Ok(decision)
    }

    /// One chunk of a streamed request body through the filters. A local answer is kept
    /// for `fail_to_proxy` (the upstream request is abandoned); a fault fails it.
    pub(super) async fn request_body_chunk(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let entered = body.as_ref().map_or(0, |b| b.len() as u64);
        let decision = ctx
            .filters
            .request_body_chunk(session.req_header_mut(), body, end_of_stream, &ctx.info)
            .await;
        self.count_skipped(ctx);
        match decision {
            Ok(Decision::Respond(local)) if local.details == CLOSE_STREAM_DETAILS => {
                return reset(ctx).map(drop);
            }
            Ok(Decision::Respond(local)) => {
                ctx.pending_local = Some(local);
                return Error::e_explain(
                    ErrorType::InternalError,
                    "a plugin answered during the request body",
                );
            }
            Ok(_) => {}
            Err(fault) => {
                self.count_fault(&fault);
                ctx.pending_error = Some(respond::PLUGIN_FAILED);
                return Error::e_explain(
                    ErrorType::InternalError,
                    "a plugin failed during the request body",
                );
            }
        }
        if let Some(Some((seen_in, seen_out))) = &mut ctx.request_streaming {
            *seen_in += entered;
            *seen_out += body.as_ref().map_or(0, |b| b.len() as u64);
            if end_of_stream && seen_in != seen_out {
                tracing::warn!(
                    route = &*ctx.info.route_name,
                    client_bytes = *seen_in,
                    filtered_bytes = *seen_out,
                    "a filter changed the request body's length but left its content-length \
                     (remove it in on_http_request_headers): the request fails"
                );
                return Error::e_explain(
                    ErrorType::InternalError,
                    "a filter changed the request body's length under a content-length",
                );
            }
        }
        Ok(())
    }

    /// Sends what a request-side decision calls for. `Ok(true)`: a response was sent.
    async fn apply(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
        decision: Result<Decision, crate::wasm::PluginFault>,
    ) -> Result<bool> {
        self.count_skipped(ctx);
        match decision {
            Ok(Decision::Continue) | Ok(Decision::Pause) => Ok(false),
            Ok(Decision::Respond(local)) if local.details == CLOSE_STREAM_DETAILS => reset(ctx),
            Ok(Decision::Respond(local)) => {
                ctx.local_reply = Some("plugin");
                self.reply_local(session, ctx, local).await
            }
            Err(fault) => {
                self.count_fault(&fault);
                self.reply_error(session, ctx, &respond::PLUGIN_FAILED)
                    .await
            }
        }
    }

    /// The response-body callbacks on one chunk. A fault here cannot change the status
    /// (the header is on its way): it is counted and the connection is closed.
    pub(super) fn response_body_filters(
        &self,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if !ctx.filters.wants_response_body() {
            return Ok(());
        }
        let entered = body.as_ref().map_or(0, |b| b.len() as u64);
        let decision = ctx.filters.response_body(body, end_of_stream, &ctx.info);
        self.count_skipped(ctx);
        if let Some((seen_in, seen_out)) = &mut ctx.response_length_kept {
            *seen_in += entered;
            *seen_out += body.as_ref().map_or(0, |b| b.len() as u64);
            if end_of_stream && seen_in != seen_out {
                tracing::warn!(
                    route = &*ctx.info.route_name,
                    upstream_bytes = *seen_in,
                    filtered_bytes = *seen_out,
                    "a filter changed the response body's length but left its content-length \
                     (remove it in on_http_response_headers): the connection is closed"
                );
                return Error::e_explain(
                    ErrorType::InternalError,
                    "a filter changed the response body's length under a content-length",
                );
            }
        }
        match decision {
            Ok(Decision::Respond(local)) => {
                tracing::warn!(
                    status = local.status,
                    "a plugin answered during the response body, after the response header \
                     was sent: ignored"
                );
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(fault) => {
                self.count_fault(&fault);
                Error::e_explain(
                    ErrorType::InternalError,
                    "a plugin failed during the response body",
                )
            }
        }
    }

    /// The response trailers through the filters: lent to them as the headers of a
    /// placeholder response, then copied back. A fault is counted and fails the stream.
    pub(super) fn response_trailer_filters(
        &self,
        trailers: &mut http::HeaderMap,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        // Pingora's ResponseHeader keeps its map behind Deref only: copy in and back
        // (trailers are a few short lines).
        let mut lent = ResponseHeader::build(200, Some(trailers.len()))?;
        for (name, value) in trailers.iter() {
            lent.append_header(name.clone(), value.clone())?;
        }
        let decision = ctx.filters.response_trailers(&mut lent, &ctx.info);
        trailers.clone_from(&lent.headers);
        self.count_skipped(ctx);
        match decision {
            Ok(Decision::Respond(local)) => {
                tracing::warn!(
                    status = local.status,
                    "a plugin answered during the response trailers, after the response was \
                     sent: ignored"
                );
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(fault) => {
                self.count_fault(&fault);
                Error::e_explain(
                    ErrorType::InternalError,
                    "a plugin failed during the response trailers",
                )
            }
        }
    }

    /// How the response body is framed once the response-header callbacks ran. As in
    /// Envoy, the upstream's `content-length` stays unless a filter removed it (a filter
    /// that changes the body's length must): keeping it lets Pingora send header and body
    /// in one write. Without it, HTTP/1.1 clients get `transfer-encoding: chunked`
    /// (Pingora would otherwise end the body by closing the connection); an HTTP/1.0
    /// client's body ends with the connection, as that protocol has it; HTTP/2 frames
    /// bodies itself.
    fn frame_response_body(&self, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        if resp.headers.contains_key(http::header::CONTENT_LENGTH) {
            ctx.response_length_kept = Some((0, 0));
        } else if ctx.info.protocol == "HTTP/1.1" {
            resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
        }
        Ok(())
    }

    /// The response side of the chain; a local response or a fault replaces `resp`.
    pub(super) async fn response_filters(
        &self,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
        head: bool,
    ) -> Result<()> {
        if ctx.filters.is_empty() {
            return Ok(());
        }
        ctx.info.response_code = Some(resp.status.as_u16());
        ctx.info.code_details = "via_upstream";
        let status = resp.status;
        let bodiless = head
            || status.is_informational()
            || status == http::StatusCode::NO_CONTENT
            || status == http::StatusCode::NOT_MODIFIED;
        let decision = ctx.filters.response_headers(resp, &ctx.info, false).await;
        self.count_skipped(ctx);
        match decision {
            Ok(Decision::Continue) | Ok(Decision::Pause) => {
                if ctx.filters.wants_response_body() && !bodiless {
                    self.frame_response_body(resp, ctx)?;
                }
                Ok(())
            }
            Ok(Decision::Respond(local)) if local.details == CLOSE_STREAM_DETAILS => {
                reset(ctx).map(drop)
            }
            Ok(Decision::Respond(local)) => {
                ctx.local_reply = Some("plugin");
                let body = local.body.clone();
                *resp = local_header(&local, &ctx.info.request_id)?;
                ctx.replacement_body = Some(body);
                Ok(())
            }
            Err(fault) => {
                self.count_fault(&fault);
                let reply = respond::PLUGIN_FAILED;
                let body = respond::error_body(&reply, &ctx.info.request_id);
                *resp = respond::header(
                    reply.status,
                    Some("application/json"),
                    body.len(),
                    &ctx.info.request_id,
                )?;
                ctx.local_reply = Some(reply.code);
                ctx.replacement_body = Some(body);
                Ok(())
            }
        }
    }
}

impl Gateway {
    /// Counts the faults of fail-open filters (`on_error: continue`) the chain skipped.
    fn count_skipped(&self, ctx: &mut RequestCtx) {
        for fault in ctx.filters.take_skipped_faults() {
            self.count_fault(&fault);
        }
    }
}

/// The whole request body, or `None` past `limit` (`server.plugins.max_buffered_body`,
/// at most [`MAX_BUFFERED_BODY`]). Pingora's retry buffer keeps a copy for
/// `request_body_filter` to send on.
async fn read_body(session: &mut Session, limit: usize) -> Result<Option<Bytes>> {
    session.as_mut().enable_retry_buffering();
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body.freeze()))
}

/// A filter closed the stream (`proxy_close_stream`): no response is sent and the
/// client's connection is dropped (`fail_to_proxy` sees `reset`), as Envoy resets it.
fn reset(ctx: &mut RequestCtx) -> Result<bool> {
    ctx.reset = true;
    ctx.local_reply = Some("reset");
    Error::e_explain(ErrorType::InternalError, "a plugin closed the stream")
}
