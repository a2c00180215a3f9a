//! A client of the OCI distribution API (`/v2/`): manifests and blobs of one repository, with
//! the registry's authentication.
//!
//! Authentication follows the registry's challenge: a request answered 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` gets a token from the realm (with the
//! credentials as basic auth, when there are some) and is sent again with it; `Basic` gets the
//! credentials themselves. Credentials come from `--user`/`--password-stdin` or the Docker
//! config's `auths` (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`); credential
//! helpers are not run.
//!
//! What a registry sends is hostile: documents are read up to [`DOCUMENT_LIMIT`], blobs
//! up to their descriptor's size and hashed as they stream; a realm that would downgrade an
//! HTTPS registry's credentials to plain HTTP is refused; redirects (blob storage) are
//! followed without the `Authorization` header when they change host (reqwest's policy).

use std::path::PathBuf;

use base64::Engine as _;
use futures::StreamExt as _;

use crate::blobs::BlobStore;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::spec::DOCUMENT_LIMIT;

/// A user name and password for a registry.
#[derive(Clone)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, ***)", self.user)
    }
}

impl Credentials {
    /// The credentials the Docker config at `path` has for `registry`, if any.
    pub fn from_docker_config(path: &std::path::Path, registry: &str) -> Option<Credentials> {
        let bytes = std::fs::read(path).ok()?;
        let config: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        let auths = config.get("auths")?.as_object()?;
        let entry = auths.iter().find_map(|(key, value)| {
            let host = key
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()
                .unwrap_or("");
            (host == registry).then_some(value)
        })?;
        let auth = entry.get("auth")?.as_str()?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    }

    /// The Docker config file this user would have.
    pub fn docker_config_path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
            return Some(PathBuf::from(dir).join("config.json"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
    }
}

/// How to reach a registry.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Plain HTTP instead of HTTPS (a registry on loopback).
    pub insecure: bool,
    /// Credentials; when `None`, the Docker config's are used if it has some.
    pub credentials: Option<Credentials>,
}

/// A client of one repository of one registry.
pub struct Client {
    http: reqwest::Client,
    base: String,
    registry: String,
    repository: String,
    credentials: Option<Credentials>,
    authorization: Option<String>,
}

/// A manifest or index as fetched: its bytes, media type and digest.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The document.
    pub bytes: Vec<u8>,
    /// The `Content-Type` it came with.
    pub media_type: Option<String>,
    /// The digest of `bytes`.
    pub digest: Digest,
}

enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic,
}

fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    // key="value" pairs, commas between (a value may hold commas: scopes do).
    let mut s = rest.trim();
    while !s.is_empty() {
        let (key, after) = s.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(value.to_owned()),
            "service" => service = Some(value.to_owned()),
            "scope" => scope = Some(value.to_owned()),
            _ => {}
        }
        s = next.trim_start().trim_start_matches(',').trim_start();
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

impl Client {
    /// A client for `reference`'s repository.
    pub fn new(reference: &Reference, options: &ClientOptions) -> Result<Client> {
        let scheme = if options.insecure { "http" } else { "https" };
        let base = format!("{scheme}://{}", reference.registry);
        let http = reqwest::Client::builder()
            .user_agent(concat!("firepit/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(std::time::Duration::from_secs(30))
            .read_timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|source| Error::Http {
                url: base.clone(),
                source,
            })?;
        let credentials = options.credentials.clone().or_else(|| {
            Credentials::docker_config_path()
                .and_then(|p| Credentials::from_docker_config(&p, &reference.registry))
        });
        Ok(Client {
            http,
            base,
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            credentials,
            authorization: None,
        })
    }

    /// Sends a GET, answering an authentication challenge once.
    async fn get(&mut self, url: &str, accept: Option<&str>) -> Result<reqwest::Response> {
        let mut answered = false;
        loop {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(reqwest::header::ACCEPT, a);
            }
            if let Some(auth) = &self.authorization {
                req = req.header(reqwest::header::AUTHORIZATION, auth);
            }
            let resp = req.send().await.map_err(|source| Error::Http {
                url: url.to_owned(),
                source,
            })?;
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED && !answered {
                answered = true;
                let challenge = resp
                    .headers()
                    .get(reqwest::header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                match challenge {
                    Some(Challenge::Basic) => {
                        let creds = self
                            .credentials
                            .as_ref()
                            .ok_or_else(|| self.unauthorized())?;
                        self.authorization = Some(basic(creds));
                    }
                    Some(Challenge::Bearer {
                        realm,
                        service,
                        scope,
                    }) => {
                        let token = self.token(&realm, service, scope).await?;
                        self.authorization = Some(format!("Bearer {token}"));
                    }
                    None => return Err(self.unauthorized()),
                }
                continue;
            }
            if resp.status() == reqwest::StatusCode::UNAUTHORIZED
                || resp.status() == reqwest::StatusCode::FORBIDDEN
            {
                return Err(self.unauthorized());
            }
            if !resp.status().is_success() {
                return Err(status_error(url, resp).await);
            }
            return Ok(resp);
        }
    }

    fn unauthorized(&self) -> Error {
        Error::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            had_credentials: self.credentials.is_some(),
        }
    }

    async fn token(
        &self,
        realm: &str,
        service: Option<String>,
        scope: Option<String>,
    ) -> Result<String> {
        let mut url = reqwest::Url::parse(realm)
            .map_err(|e| Error::bad("the registry's token realm", e.to_string()))?;
        if url.scheme() != "https" && !(url.scheme() == "http" && self.base.starts_with("http:")) {
            return Err(Error::bad(
                "the registry's token realm",
                format!("{realm} is not HTTPS; refusing to send credentials there"),
            ));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = &service {
                q.append_pair("service", s);
            }
            let scope = scope.unwrap_or_else(|| format!("repository:{}:pull", self.repository));
            q.append_pair("scope", &scope);
        }
        let mut req = self.http.get(url.clone());
        if let Some(c) = &self.credentials {
            req = req.header(reqwest::header::AUTHORIZATION, basic(c));
        }
        let url_text = url.to_string();
        let resp = req.send().await.map_err(|source| Error::Http {
            url: url_text.clone(),
            source,
        })?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED
            || resp.status() == reqwest::StatusCode::FORBIDDEN
        {
            return Err(self.unauthorized());
        }
        if !resp.status().is_success() {
            return Err(status_error(&url_text, resp).await);
        }
        let bytes = read_limited(resp, &url_text, 1 << 20).await?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token = serde_json::from_slice(&bytes)
            .map_err(|e| Error::bad("the registry's token answer", e.to_string()))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| Error::bad("the registry's token answer", "it holds no usable token"))
    }

    /// Fetches the manifest or index `target` (a tag or a digest); a digest is verified.
    pub async fn manifest(&mut self, target: &str) -> Result<Fetched> {
        let url = format!("{}/v2/{}/manifests/{target}", self.base, self.repository);
        let resp = self.get(&url, Some(ACCEPT)).await?;
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let bytes = read_limited(resp, &url, DOCUMENT_LIMIT).await?;
        let digest = Digest::of(&bytes);
        if target.starts_with("sha256:") {
            Digest::parse(target)?.verify("manifest", &digest)?;
        }
        Ok(Fetched {
            bytes,
            media_type,
            digest,
        })
    }

    /// Downloads blob `d` of `size` bytes into `store`, hashed as it streams; `progress` gets
    /// the bytes so far.
    pub async fn blob(
        &mut self,
        store: &BlobStore,
        d: &Digest,
        size: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let url = format!("{}/v2/{}/blobs/{d}", self.base, self.repository);
        let resp = self.get(&url, None).await?;
        let mut writer = store.writer(d, Some(size))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|source| Error::Http {
                url: url.clone(),
                source,
            })?;
            writer.write(&chunk)?;
            progress(writer.written());
        }
        writer.commit()
    }
}

fn basic(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.user, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn status_error(url: &str, resp: reqwest::Response) -> Error {
    let status = resp.status().as_u16();
    let body = read_limited(resp, url, 4096).await.unwrap_or_default();
    let text: String = String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    Error::Registry {
        url: url.to_owned(),
        status,
        body: text,
    }
}

/// The body of `resp`, at most `limit` bytes.
async fn read_limited(resp: reqwest::Response, url: &str, limit: u64) -> Result<Vec<u8>> {
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(Error::TooLarge {
            what: "registry answer",
            limit,
        });
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|source| Error::Http {
            url: url.to_owned(),
            source,
        })?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(Error::TooLarge {
                what: "registry answer",
                limit,
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        )
        .unwrap();
        let Challenge::Bearer {
            realm,
            service,
            scope,
        } = c
        else {
            panic!("not bearer")
        };
        assert_eq!(realm, "https://auth.example/token");
        assert_eq!(service.as_deref(), Some("registry.example"));
        assert_eq!(scope.as_deref(), Some("repository:a/b:pull,push"));
        assert!(matches!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        ));
        assert!(parse_challenge("Negotiate").is_none());
        assert!(parse_challenge(r#"Bearer service="x""#).is_none());
    }

    #[test]
    fn reads_docker_config() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        std::fs::write(
            &path,
            format!(r#"{{"auths":{{"https://127.0.0.1:5000/v1/":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
        let c = Credentials::from_docker_config(&path, "127.0.0.1:5000").unwrap();
        assert_eq!(
            (c.user.as_str(), c.password.as_str()),
            ("alice", "s3cret:x")
        );
        assert!(format!("{c:?}").contains("***") && !format!("{c:?}").contains("s3cret"));
        assert!(Credentials::from_docker_config(&path, "127.0.0.1:5001").is_none());
    }
}
