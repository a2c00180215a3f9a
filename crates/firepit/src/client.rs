//! A small client of the daemon's HTTP API, used by the subcommands.

use anyhow::{Context, Result, anyhow};
use firepit_wire::api::{CreateSession, ErrorBody, Session};
use reqwest::{Method, RequestBuilder, Response};

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
