//! `/v1/sessions/{id}/agent`: talk to the session's agent, stop it, see how it
//! stands. What it does streams through the session's event log.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use firepit_agent::Sent;
use firepit_wire::api::{AgentMessage, AgentSent, AgentStatus, AgentStopped};

use super::{JsonBody, valid};
use crate::{App, Error};

/// Longest message accepted from a person, in characters (`maxLength`).
const MAX_MESSAGE: usize = 256 << 10;

pub(super) async fn send(
    State(app): State<App>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<AgentMessage>,
) -> Result<(StatusCode, Json<AgentSent>), Error> {
    if valid::blank(&req.message) {
        return Err(Error::BadRequest("the message is empty".into()));
    }
    if req.message.chars().count() > MAX_MESSAGE {
        return Err(Error::BadRequest(format!(
            "the message is longer than {MAX_MESSAGE} characters"
        )));
    }
    let agent = app.agent(&id).await?;
    let status = match agent.send(req.message).await {
        Sent::Started => "started",
        Sent::Interjected => "interjected",
    };
    Ok((
        StatusCode::ACCEPTED,
        Json(AgentSent {
            status: status.into(),
        }),
    ))
}

pub(super) async fn stop(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<AgentStopped>, Error> {
    app.store().session(&id)?;
    let stopped = app.agent_if_made(&id).is_some_and(|a| a.stop());
    Ok(Json(AgentStopped { stopped }))
}

pub(super) async fn status(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<AgentStatus>, Error> {
    app.store().session(&id)?;
    let model = app.agents().model();
    let agent = app.agent_if_made(&id);
    let (input_tokens, output_tokens, cost_usd) = match &agent {
        Some(a) => a.history().totals,
        // Not loaded since the daemon started: the log has the totals.
        None => firepit_agent::rebuild(&app.transcript(&id)?).totals,
    };
    Ok(Json(AgentStatus {
        configured: model.is_some(),
        provider: model.map(|m| m.kind.name().to_owned()),
        model: model.map(|m| m.model.clone()),
        running: agent.is_some_and(|a| a.is_running()),
        input_tokens,
        output_tokens,
        cost_usd,
        help: model
            .is_none()
            .then(|| firepit_agent::CONFIGURE_HELP.to_owned()),
        last_seq: app.events().last_seq(&id)?,
    }))
}
