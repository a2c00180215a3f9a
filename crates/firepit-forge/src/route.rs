//! Where a machine's request may go: the broker's canonicalizer.
//!
//! The machine's root writes every byte of the request target, so nothing of
//! it is pasted into the upstream URL. Instead:
//!
//! 1. [`parse`] splits the raw path into segments and refuses what a URL
//!    parser or a server behind it could reinterpret: empty segments (`//`),
//!    `.` and `..`, backslashes, `;`, any byte outside a small set, and every
//!    percent-encoding of a dot, slash, backslash, percent sign (so no double
//!    encoding), `?`, `#`, `;`, a control or a non-ASCII byte. Over-long
//!    paths and queries are refused. Git routes take only their three
//!    endpoints, each with its one method and query; REST queries pass as
//!    decoded pairs with plain keys.
//! 2. [`upstream`] builds the URL from the configured base and the
//!    session's own spelling of the repository, pushing the decoded segments
//!    one by one (the URL library encodes each), then parses the result again
//!    and checks that what will be sent has the base's scheme, host, port and
//!    credentials, and a path under `<base>/repos/<owner>/<name>` (REST) or
//!    equal to `<base>/<owner>/<name>.git/<endpoint>` (git), with no dot
//!    segment left in it.
//! 3. [`api_write_allowed`] decides REST writes on the segments of that
//!    parsed URL, the path actually sent.

use hyper::{Method, StatusCode};
use reqwest::Url;

use crate::RepoName;

/// Longest raw path accepted.
pub(crate) const MAX_PATH: usize = 2048;
/// Most path segments accepted.
pub(crate) const MAX_SEGMENTS: usize = 64;
/// Longest raw query accepted.
pub(crate) const MAX_QUERY: usize = 4096;
/// Most query pairs accepted.
const MAX_PAIRS: usize = 32;

/// Why a request is refused, and the status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub status: StatusCode,
    pub why: String,
}

fn refuse(status: StatusCode, why: impl Into<String>) -> Refusal {
    Refusal {
        status,
        why: why.into(),
    }
}

fn bad(why: impl Into<String>) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, why)
}

/// A git smart-HTTP endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GitEndpoint {
    /// `GET info/refs?service=git-upload-pack`
    RefsUpload,
    /// `GET info/refs?service=git-receive-pack`
    RefsReceive,
    /// `POST git-upload-pack`
    UploadPack,
    /// `POST git-receive-pack`
    ReceivePack,
}

impl GitEndpoint {
    fn segments(self) -> &'static [&'static str] {
        match self {
            GitEndpoint::RefsUpload | GitEndpoint::RefsReceive => &["info", "refs"],
            GitEndpoint::UploadPack => &["git-upload-pack"],
            GitEndpoint::ReceivePack => &["git-receive-pack"],
        }
    }
}

/// What a request asks for, checked and decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Git smart HTTP of `repo` (the session's spelling).
    Git {
        repo: RepoName,
        endpoint: GitEndpoint,
    },
    /// The REST API under `repos/<repo>`: decoded segments and query pairs.
    Api {
        repo: RepoName,
        rest: Vec<String>,
        query: Vec<(String, String)>,
    },
}

/// The URL to send and its segments below the repository's prefix.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub url: Url,
    /// The parsed URL's path segments after `…/repos/<owner>/<name>`
    /// (percent-encoded as sent); empty for git.
    pub rest: Vec<String>,
}

/// Bytes a path segment may hold as they are.
fn raw_ok(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,=:@".contains(&b)
}

/// Bytes a path segment may hold percent-encoded: printable ASCII but for
/// those that could split or climb a path, or start another encoding.
fn decoded_ok(b: u8) -> bool {
    (0x20..0x7f).contains(&b) && !b"./\\%?#;".contains(&b)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One raw segment of the machine's path, decoded, or why it is refused.
fn segment(raw: &str) -> Result<String, Refusal> {
    if raw.is_empty() {
        return Err(bad("empty path segments (//) are refused"));
    }
    if raw == "." || raw == ".." {
        return Err(bad("paths with . or .. segments are refused"));
    }
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let value = match (bytes.get(i + 1), bytes.get(i + 2)) {
                    (Some(&h), Some(&l)) => hex(h).zip(hex(l)).map(|(h, l)| h << 4 | l),
                    _ => None,
                };
                let Some(v) = value else {
                    return Err(bad("a % in a path must start an escape of two hex digits"));
                };
                if !decoded_ok(v) {
                    return Err(bad(format!(
                        "%{v:02X} is refused in a path: encoded dots, slashes, backslashes, percent signs, ? # ; and control or non-ASCII bytes never pass"
                    )));
                }
                out.push(char::from(v));
                i += 3;
            }
            b'\\' => return Err(bad("backslashes are refused in a path")),
            b if raw_ok(b) => {
                out.push(char::from(b));
                i += 1;
            }
            b => {
                return Err(bad(format!(
                    "the byte 0x{b:02X} ({:?}) is refused in a path",
                    char::from(b)
                )));
            }
        }
    }
    if out == "." || out == ".." {
        return Err(bad("paths with . or .. segments are refused"));
    }
    Ok(out)
}

/// Query pairs, decoded; keys plain (`[A-Za-z0-9_-[]]`, not starting with `_`).
fn query_pairs(raw: &str) -> Result<Vec<(String, String)>, Refusal> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if pairs.len() > MAX_PAIRS {
        return Err(refuse(
            StatusCode::URI_TOO_LONG,
            format!("at most {MAX_PAIRS} query parameters pass"),
        ));
    }
    for (k, _) in &pairs {
        let plain = (1..=64).contains(&k.len())
            && !k.starts_with('_')
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-[]".contains(&b));
        if !plain {
            return Err(bad(format!(
                "the query parameter {k:?} is refused: names are letters, digits, _ - [ ] and do not start with _"
            )));
        }
    }
    Ok(pairs)
}

/// Checks `method path?query` of a machine's request against the session's
/// `repos` and decodes it.
pub(crate) fn parse(
    method: &Method,
    path: &str,
    query: Option<&str>,
    repos: &[RepoName],
) -> Result<Target, Refusal> {
    let allowed = || {
        repos
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let serves = || {
        refuse(
            StatusCode::FORBIDDEN,
            format!(
                "the broker serves git (clone, fetch, push) and /api/repos/… for {}",
                allowed()
            ),
        )
    };
    if path.len() > MAX_PATH {
        return Err(refuse(
            StatusCode::URI_TOO_LONG,
            format!("paths longer than {MAX_PATH} bytes are refused"),
        ));
    }
    let query = query.unwrap_or("");
    if query.len() > MAX_QUERY {
        return Err(refuse(
            StatusCode::URI_TOO_LONG,
            format!("queries longer than {MAX_QUERY} bytes are refused"),
        ));
    }
    let Some(rest) = path.strip_prefix('/') else {
        return Err(bad("the request target must be a path starting with /"));
    };
    let raw: Vec<&str> = rest.split('/').collect();
    if raw.len() > MAX_SEGMENTS {
        return Err(refuse(
            StatusCode::URI_TOO_LONG,
            format!("paths of more than {MAX_SEGMENTS} segments are refused"),
        ));
    }
    let segs = raw
        .iter()
        .map(|s| segment(s))
        .collect::<Result<Vec<_>, _>>()?;
    let pick = |owner: &str, name: &str| -> Result<RepoName, Refusal> {
        // Owner and name as written (no escapes: RepoName refuses `%`).
        let asked: RepoName = format!("{owner}/{name}")
            .parse()
            .map_err(|e: crate::Error| bad(e.to_string()))?;
        repos
            .iter()
            .find(|r| r.same(&asked))
            .cloned()
            .ok_or_else(|| {
                refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "this session may reach only {}; {asked} is not among them",
                        allowed()
                    ),
                )
            })
    };
    let head: Vec<&str> = segs.iter().take(2).map(String::as_str).collect();
    if head == ["api", "repos"] {
        if segs.len() < 4 {
            return Err(serves());
        }
        let repo = pick(raw[2], raw[3])?;
        if !matches!(
            *method,
            Method::GET | Method::HEAD | Method::POST | Method::PATCH
        ) {
            return Err(write_refused());
        }
        return Ok(Target::Api {
            repo,
            rest: segs[4..].to_vec(),
            query: query_pairs(query)?,
        });
    }
    let tail: Vec<&str> = segs.iter().skip(2).map(String::as_str).collect();
    if !matches!(
        tail.as_slice(),
        ["info", "refs"] | ["git-upload-pack"] | ["git-receive-pack"]
    ) {
        return Err(serves());
    }
    let repo = pick(raw[0], raw[1])?;
    let endpoint = match (method, tail.as_slice(), query) {
        (&Method::GET, ["info", "refs"], "service=git-upload-pack") => GitEndpoint::RefsUpload,
        (&Method::GET, ["info", "refs"], "service=git-receive-pack") => GitEndpoint::RefsReceive,
        (&Method::POST, ["git-upload-pack"], "") => GitEndpoint::UploadPack,
        (&Method::POST, ["git-receive-pack"], "") => GitEndpoint::ReceivePack,
        _ => {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "git passes as GET info/refs?service=git-upload-pack|git-receive-pack and POST git-upload-pack|git-receive-pack, with nothing else in the query",
            ));
        }
    };
    Ok(Target::Git { repo, endpoint })
}

fn write_refused() -> Refusal {
    refuse(
        StatusCode::FORBIDDEN,
        "through the broker a machine reads the repository's API and writes only issues, comments, pull requests, check runs and statuses",
    )
}

/// Non-empty path segments of a base URL.
fn base_segments(base: &Url) -> Vec<&str> {
    base.path_segments()
        .map(|s| s.filter(|s| !s.is_empty()).collect())
        .unwrap_or_default()
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let pair = (b[i] == b'%')
            .then(|| hex(*b.get(i + 1)?).zip(hex(*b.get(i + 2)?)))
            .flatten();
        if let Some((h, l)) = pair {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// The upstream URL of `target` on the forge (`api` for REST, `web` for
/// git), built from its checked parts and checked again as it will be sent.
pub(crate) fn upstream(target: &Target, api: &Url, web: &Url) -> Result<Upstream, Refusal> {
    let internal = |why: &str| {
        refuse(
            StatusCode::BAD_REQUEST,
            format!("the forge URL for this request did not check out ({why}); it was not sent"),
        )
    };
    let (base, prefix, rest): (&Url, Vec<String>, Vec<String>) = match target {
        Target::Api { repo, rest, .. } => (
            api,
            vec!["repos".into(), repo.owner.clone(), repo.name.clone()],
            rest.clone(),
        ),
        Target::Git { repo, endpoint } => (
            web,
            vec![repo.owner.clone(), format!("{}.git", repo.name)],
            endpoint
                .segments()
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        ),
    };
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| internal("the base URL cannot take a path"))?
        .pop_if_empty()
        .extend(prefix.iter().chain(rest.iter()));
    match target {
        Target::Git {
            endpoint: GitEndpoint::RefsUpload,
            ..
        } => url.set_query(Some("service=git-upload-pack")),
        Target::Git {
            endpoint: GitEndpoint::RefsReceive,
            ..
        } => url.set_query(Some("service=git-receive-pack")),
        Target::Api { query, .. } if !query.is_empty() => {
            url.query_pairs_mut().extend_pairs(query);
        }
        Target::Api { .. } | Target::Git { .. } => {}
    }

    // What the HTTP client sends is this text, parsed again.
    let sent = Url::parse(url.as_str()).map_err(|_| internal("it does not parse"))?;
    if sent.as_str() != url.as_str() {
        return Err(internal("it changes when parsed again"));
    }
    if sent.scheme() != base.scheme()
        || sent.host_str() != base.host_str()
        || sent.port_or_known_default() != base.port_or_known_default()
        || sent.username() != base.username()
        || sent.password() != base.password()
        || sent.fragment().is_some()
    {
        return Err(internal("it does not name the configured forge"));
    }
    let segs: Vec<&str> = sent
        .path_segments()
        .map(Iterator::collect)
        .ok_or_else(|| internal("it has no path"))?;
    let mut want: Vec<&str> = base_segments(base);
    want.extend(prefix.iter().map(String::as_str));
    if segs.len() < want.len() || segs[..want.len()] != want[..] {
        return Err(internal("its path leaves the repository"));
    }
    let below: Vec<String> = segs[want.len()..].iter().map(|s| (*s).to_owned()).collect();
    for s in &below {
        let d = percent_decode(s);
        if d.is_empty() || d == b"." || d == b".." || d.contains(&b'/') || d.contains(&b'\\') {
            return Err(internal("its path has an empty, dot or split segment"));
        }
    }
    match target {
        Target::Git { endpoint, .. } if below != endpoint.segments() => {
            Err(internal("its path is not the git endpoint"))
        }
        Target::Git { .. } => Ok(Upstream {
            url: sent,
            rest: Vec::new(),
        }),
        Target::Api { .. } => Ok(Upstream {
            url: sent,
            rest: below,
        }),
    }
}

/// Which REST calls a machine may make, judged on the segments of the path
/// sent below `repos/<owner>/<name>`: any read, and writes to issues,
/// comments, pull requests (not merges), check runs and statuses. Deleting,
/// settings, hooks, keys, refs, collaborators and the like stay with the
/// person.
pub(crate) fn api_write_allowed(method: &Method, rest: &[String]) -> Result<(), Refusal> {
    let first = rest.first().map(String::as_str);
    let ok = match *method {
        Method::GET | Method::HEAD => true,
        Method::POST => matches!(first, Some("issues" | "pulls" | "check-runs" | "statuses")),
        Method::PATCH => {
            matches!(first, Some("issues" | "pulls" | "check-runs"))
                && rest.last().map(String::as_str) != Some("merge")
        }
        _ => false,
    };
    if ok { Ok(()) } else { Err(write_refused()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repos() -> Vec<RepoName> {
        vec!["octo/app".parse().unwrap()]
    }

    fn api() -> Url {
        Url::parse("http://127.0.0.1:9/api/v3").unwrap()
    }

    fn web() -> Url {
        Url::parse("http://127.0.0.1:9").unwrap()
    }

    /// The URL sent for `method target`, after the write filter, or the
    /// refusal's status.
    fn send(method: &str, target: &str) -> Result<String, u16> {
        let method: Method = method.parse().unwrap();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        let run = || -> Result<String, Refusal> {
            let t = parse(&method, path, query, &repos())?;
            let up = upstream(&t, &api(), &web())?;
            if matches!(t, Target::Api { .. }) {
                api_write_allowed(&method, &up.rest)?;
            }
            Ok(up.url.to_string())
        };
        run().map_err(|r| {
            assert!(!r.why.is_empty());
            r.status.as_u16()
        })
    }

    #[test]
    fn allowed_requests_go_to_the_repository_on_the_configured_forge() {
        let base = "http://127.0.0.1:9/api/v3/repos/octo/app";
        for (method, target, want) in [
            ("GET", "/api/repos/octo/app", base.to_owned()),
            ("GET", "/api/repos/Octo/App.git", base.to_owned()),
            ("GET", "/api/repos/octo/app/pulls", format!("{base}/pulls")),
            (
                "GET",
                "/api/repos/octo/app/issues?labels=a%20b,c&per_page=100&page=2",
                format!("{base}/issues?labels=a+b%2Cc&per_page=100&page=2"),
            ),
            (
                "GET",
                "/api/repos/octo/app/compare/main...feature",
                format!("{base}/compare/main...feature"),
            ),
            (
                "GET",
                "/api/repos/octo/app/contents/docs/a%20b.md",
                format!("{base}/contents/docs/a%20b.md"),
            ),
            (
                "GET",
                "/api/repos/octo/app/%69ssues",
                format!("{base}/issues"),
            ),
            (
                "POST",
                "/api/repos/octo/app/issues/3/comments",
                format!("{base}/issues/3/comments"),
            ),
            (
                "PATCH",
                "/api/repos/octo/app/pulls/3",
                format!("{base}/pulls/3"),
            ),
            (
                "POST",
                "/api/repos/octo/app/statuses/abc",
                format!("{base}/statuses/abc"),
            ),
            (
                "POST",
                "/api/repos/octo/app/check-runs",
                format!("{base}/check-runs"),
            ),
            (
                "GET",
                "/octo/app.git/info/refs?service=git-upload-pack",
                "http://127.0.0.1:9/octo/app.git/info/refs?service=git-upload-pack".into(),
            ),
            (
                "GET",
                "/Octo/App/info/refs?service=git-receive-pack",
                "http://127.0.0.1:9/octo/app.git/info/refs?service=git-receive-pack".into(),
            ),
            (
                "POST",
                "/octo/app.git/git-receive-pack",
                "http://127.0.0.1:9/octo/app.git/git-receive-pack".into(),
            ),
            (
                "POST",
                "/octo/app/git-upload-pack",
                "http://127.0.0.1:9/octo/app.git/git-upload-pack".into(),
            ),
        ] {
            assert_eq!(send(method, target), Ok(want), "{method} {target}");
        }
    }

    #[test]
    fn tricks_are_refused_with_a_4xx() {
        let long = format!("/api/repos/octo/app/{}", "a/".repeat(70));
        let longer = format!("/api/repos/octo/app/{}", "a".repeat(MAX_PATH));
        let long_query = format!("/api/repos/octo/app?q={}", "a".repeat(MAX_QUERY));
        for (method, target, status) in [
            // Encoded dots, any case, and double encodings.
            (
                "GET",
                "/api/repos/octo/app/issues/%2e%2e/%2e%2e/%2e%2e/%2e%2e/user",
                400,
            ),
            (
                "GET",
                "/api/repos/octo/app/issues/%2E%2E/%2E%2E/%2E%2E/%2E%2E/user",
                400,
            ),
            (
                "GET",
                "/api/repos/octo/app/issues/.%2e/.%2e/.%2e/.%2e/user",
                400,
            ),
            ("GET", "/api/repos/octo/app/issues/%2e./x", 400),
            (
                "GET",
                "/api/repos/octo/app/issues/%252e%252e/%252e%252e/user",
                400,
            ),
            ("GET", "/api/repos/octo/app/%2e", 400),
            ("GET", "/api/repos/octo/app/a%2ex", 400),
            // Encoded slashes and backslashes.
            ("GET", "/api/repos/octo/app/issues%2f..%2f..%2fother", 400),
            ("GET", "/api/repos/octo/app/issues%2F..%2F..%2Fother", 400),
            ("GET", "/api/repos/octo/app/..%5c..%5cother", 400),
            ("GET", "/api/repos/octo/app/%5C", 400),
            ("GET", "/api/repos/octo/app/%25", 400),
            ("GET", "/api/repos/octo/app/%2", 400),
            ("GET", "/api/repos/octo/app/%zz", 400),
            ("GET", "/api/repos/octo/app/%+1", 400),
            // Literal dots, backslashes, empty segments, path parameters.
            ("GET", "/api/repos/octo/app/../../user", 400),
            ("GET", "/api/repos/octo/app/issues/./x", 400),
            ("GET", "/api/repos/octo/app/..\\..\\user", 400),
            ("GET", "/api/repos/octo/app//user", 400),
            ("GET", "//api/repos/octo/app", 400),
            ("GET", "/api/repos/octo/app/", 400),
            ("GET", "/api/repos/octo/app/..;/..;/user", 400),
            ("GET", "/api/repos/octo/app/x;y", 400),
            // Encoded query and fragment marks, controls, non-ASCII.
            ("GET", "/api/repos/octo/app/x%3f/../../user", 400),
            ("GET", "/api/repos/octo/app/x%23", 400),
            ("GET", "/api/repos/octo/app/x%00", 400),
            ("GET", "/api/repos/octo/app/x%0a", 400),
            ("GET", "/api/repos/octo/app/x%c0%ae", 400),
            ("GET", "/api/repos/octo/app/x%ff", 400),
            // Over-long.
            ("GET", long.as_str(), 414),
            ("GET", longer.as_str(), 414),
            ("GET", long_query.as_str(), 414),
            // Other repositories and names.
            ("GET", "/api/repos/octo/app2", 403),
            ("GET", "/api/repos/octo/other", 403),
            ("GET", "/api/repos/octo%2fapp/x", 400),
            ("GET", "/api/repos/oc%74o/app", 400),
            ("GET", "/api/repos/octo", 403),
            ("GET", "/api/user", 403),
            ("GET", "/api/repos", 403),
            ("GET", "/api/graphql", 403),
            (
                "GET",
                "/octo/other.git/info/refs?service=git-upload-pack",
                403,
            ),
            // Other methods and writes.
            ("DELETE", "/api/repos/octo/app", 403),
            ("PUT", "/api/repos/octo/app/git/refs/heads/main", 403),
            ("PATCH", "/api/repos/octo/app/git/refs/heads/main", 403),
            ("POST", "/api/repos/octo/app/git/refs", 403),
            ("POST", "/api/repos/octo/app/hooks", 403),
            ("POST", "/api/repos/octo/app/keys", 403),
            ("POST", "/api/repos/octo/app/merges", 403),
            ("POST", "/api/repos/octo/app/forks", 403),
            ("PUT", "/api/repos/octo/app/pulls/3/merge", 403),
            ("PATCH", "/api/repos/octo/app/pulls/3/merge", 403),
            ("PATCH", "/api/repos/octo/app", 403),
            ("POST", "/api/repos/octo/app/issuesx", 403),
            ("PUT", "/api/repos/octo/app/collaborators/x", 403),
            ("OPTIONS", "/api/repos/octo/app", 403),
            ("CONNECT", "/api/repos/octo/app", 403),
            // Query tricks.
            ("POST", "/api/repos/octo/app/issues?_method=DELETE", 400),
            ("GET", "/api/repos/octo/app?a%2fb=1", 400),
            ("GET", "/api/repos/octo/app?x/../../user=1", 400),
            // Git: only its endpoints, methods and queries.
            ("GET", "/octo/app.git/info/refs", 405),
            (
                "GET",
                "/octo/app.git/info/refs?service=git-upload-pack&x=1",
                405,
            ),
            (
                "GET",
                "/octo/app.git/info/refs?service=git-upload-pack/../../x",
                405,
            ),
            (
                "POST",
                "/octo/app.git/info/refs?service=git-upload-pack",
                405,
            ),
            ("GET", "/octo/app.git/git-receive-pack", 405),
            ("POST", "/octo/app.git/git-receive-pack?x=1", 405),
            ("PUT", "/octo/app.git/git-receive-pack", 405),
            ("GET", "/octo/app.git/objects/info/packs", 403),
            ("GET", "/octo/app.git/HEAD", 403),
            (
                "GET",
                "/octo/app.git/info/%2e%2e/%2e%2e/other.git/info/refs",
                400,
            ),
            ("GET", "/", 400),
            ("GET", "*", 400),
            ("GET", "", 400),
        ] {
            assert_eq!(send(method, target), Err(status), "{method} {target}");
        }
    }

    #[test]
    fn an_owner_called_api_still_has_git() {
        let repos: Vec<RepoName> = vec!["api/tools".parse().unwrap()];
        let t = parse(
            &Method::GET,
            "/api/tools.git/info/refs",
            Some("service=git-upload-pack"),
            &repos,
        )
        .unwrap();
        let up = upstream(&t, &api(), &web()).unwrap();
        assert_eq!(
            up.url.as_str(),
            "http://127.0.0.1:9/api/tools.git/info/refs?service=git-upload-pack"
        );
        assert_eq!(
            parse(&Method::GET, "/api/user", None, &repos)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
    }

    #[test]
    fn the_check_after_building_holds_the_base() {
        // A base that carries a path keeps it, and the prefix is checked against it.
        let t = parse(&Method::GET, "/api/repos/octo/app/pulls", None, &repos()).unwrap();
        let up = upstream(&t, &api(), &web()).unwrap();
        assert_eq!(up.url.host_str(), Some("127.0.0.1"));
        assert_eq!(up.url.port(), Some(9));
        assert_eq!(up.url.path(), "/api/v3/repos/octo/app/pulls");
        assert_eq!(up.rest, ["pulls"]);
        // A base that cannot take segments is refused, not used.
        let odd = Url::parse("mailto:x@y").unwrap();
        assert!(upstream(&t, &odd, &web()).is_err());
    }

    /// A small, seeded generator (splitmix64): no extra crate for the
    /// property below, and a failure names the path that broke it.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
    }

    #[test]
    fn every_accepted_path_stays_under_the_repository() {
        const PIECES: &[&str] = &[
            "/", "//", ".", "..", "...", "%2e", "%2E", "%2f", "%2F", "%5c", "%25", "%252e", "%3f",
            "%23", "%3b", "%20", "%41", "%", "\\", ";", "?", "#", "a", "issues", "pulls", "1",
            "user", "repos", "octo", "app", "other", "~", "!", "@", ":", "+", "&", "=", "'", "(",
            "*", ",", "$", "-", "_", "%2e%2e", ".%2e", "%c0%ae", "%00",
        ];
        const STARTS: &[&str] = &[
            "/api/repos/octo/app",
            "/api/repos/octo/app/",
            "/api/repos/Octo/APP/",
            "/api/repos/octo/",
            "/octo/app.git/",
            "/",
            "",
        ];
        let methods = [
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::PUT,
            Method::DELETE,
        ];
        let mut g = Gen(0x5EED_F0F0_1234_5678);
        let mut accepted = 0;
        for _ in 0..200_000 {
            let mut target = g.pick(STARTS).to_owned();
            for _ in 0..(g.next() % 12) {
                target.push_str(g.pick(PIECES));
            }
            let method = &methods[(g.next() % methods.len() as u64) as usize];
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (target.as_str(), None),
            };
            let Ok(t) = parse(method, path, query, &repos()) else {
                continue;
            };
            let Ok(up) = upstream(&t, &api(), &web()) else {
                continue;
            };
            if matches!(t, Target::Api { .. }) && api_write_allowed(method, &up.rest).is_err() {
                continue;
            }
            accepted += 1;
            let url = &up.url;
            assert_eq!(url.origin(), api().origin(), "{method} {target}");
            let p = url.path();
            let under = p == "/api/v3/repos/octo/app"
                || p.starts_with("/api/v3/repos/octo/app/")
                || matches!(
                    p,
                    "/octo/app.git/info/refs"
                        | "/octo/app.git/git-upload-pack"
                        | "/octo/app.git/git-receive-pack"
                );
            assert!(under, "{method} {target} -> {url}");
            let decoded = String::from_utf8(percent_decode(p)).unwrap();
            assert!(
                !decoded.split('/').any(|s| s == "." || s == ".."),
                "{method} {target} -> {url}"
            );
            assert!(
                !decoded.contains('\\') && !decoded.contains('%'),
                "{target} -> {url}"
            );
            if *method != Method::GET {
                let rest = p.trim_start_matches("/api/v3/repos/octo/app/");
                assert!(
                    p.starts_with("/octo/app.git/")
                        || ["issues", "pulls", "check-runs", "statuses"]
                            .iter()
                            .any(|w| rest == *w || rest.starts_with(&format!("{w}/"))),
                    "{method} {target} -> {url}"
                );
            }
        }
        assert!(
            accepted > 1000,
            "the generator reaches accepted paths: {accepted}"
        );
    }
}
