//! A small client of the daemon's HTTP API, used by the subcommands.

use std::ops::ControlFlow;

use anyhow::{Context, Result, anyhow};
use firepit_wire::api::{CreateSession, ErrorBody, Session};
use futures::StreamExt;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;

use crate::settings::Target;

/// Talks to one daemon.
pub struct Client {
    http: reqwest::Client,
    target: Target,
}

impl Client {
    /// A client for `target`.
    pub fn new(target: Target) -> Client {
        Client {
            http: reqwest::Client::new(),
            target,
        }
    }

    /// The daemon's base URL.
    pub fn url(&self) -> &str {
        &self.target.url
    }

    /// The API token.
    pub fn token(&self) -> &str {
        &self.target.token
    }

    /// A request to `path` (under the base URL) with the token.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.target.url, path))
            .bearer_auth(&self.target.token)
    }

    /// Sends a request and turns an error response into an error that says what
    /// the daemon said.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "cannot reach the firepit daemon at {}; is it running? Start it with `firepit up`",
                    self.target.url
                )
            } else {
                anyhow!(e).context("talking to the firepit daemon")
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => Err(anyhow!("{}", body.error.message)),
            Err(_) => Err(anyhow!("the daemon answered {status}: {text}")),
        }
    }

    /// `POST /v1/sessions`
    pub async fn create(&self, req: &CreateSession) -> Result<Session> {
        let resp = self
            .send(self.request(Method::POST, "/v1/sessions").json(req))
            .await?;
        resp.json().await.context("reading the new session")
    }

    /// `DELETE /v1/sessions/{id}`
    pub async fn destroy(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/sessions/{id}")))
            .await?;
        Ok(())
    }
}

/// Reads an NDJSON response body (`what` names it in errors), handing each line
/// to `handle` until the body ends (`None`) or `handle` breaks with a value.
pub async fn ndjson<T: DeserializeOwned, R>(
    resp: Response,
    what: &str,
    mut handle: impl FnMut(T) -> Result<ControlFlow<R>>,
) -> Result<Option<R>> {
    let mut body = resp.bytes_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = body.next().await {
        buf.extend_from_slice(&chunk.with_context(|| format!("the daemon's {what} broke off"))?);
        while let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            let item =
                serde_json::from_slice(&line).with_context(|| format!("reading the {what}"))?;
            if let ControlFlow::Break(r) = handle(item)? {
                return Ok(Some(r));
            }
        }
    }
    Ok(None)
}
