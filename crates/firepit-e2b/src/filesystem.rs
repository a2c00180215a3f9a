//! envd's `filesystem.Filesystem` service over the guest's file operations.
//!
//! Watching: the guest has no file-change notification, so a watcher keeps a
//! listing (names, kinds, sizes, modes and times, at most
//! [`MAX_WATCH_ENTRIES`]) and reports what differs from the last one:
//! created, written (size or time changed), removed, chmod. `GetWatcherEvents`
//! compares when the client asks; a `WatchDir` stream compares every
//! [`WATCH_POLL`] while it is open. A rename shows as a removal and a
//! creation, and changes undone between two looks are not seen. (A guest
//! file watch, `WatchFiles`, is being added for the IDE; once it is in, a
//! `WatchDir` stream should compare only the directories its batches name,
//! when they come, instead of every [`WATCH_POLL`].)
//!
//! Relative paths start at the home of the user a call acts as
//! (`Authorization: Basic`, see [`crate::users`]); a directory made as
//! `user` is given to it with the parents made for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Request, State};
use axum::http::HeaderMap;
use axum::response::Response;
use firepit_guest_client::GuestClient;
use firepit_wire::guest::{ErrorKind, FileKind};
use tokio::sync::mpsc;

use crate::connect::{self, Code, Item, StreamOptions};
use crate::proto::{
    EntryInfo, EntryResponse, EventType, FileType, FilesystemEvent, ListDirRequest,
    ListDirResponse, MoveRequest, PathRequest, WatchDirResponse, WatchRequest, WatcherRequest,
    permissions, rfc3339,
};
use crate::users::{self, Who};
use crate::{E2b, Error, Sandbox, abs_path, acting_as, home_of, sandbox_of};

/// Most entries one `ListDir` answers with.
const MAX_LIST_ENTRIES: usize = 100_000;
/// Most entries a watcher keeps track of.
pub const MAX_WATCH_ENTRIES: usize = 10_000;
/// How often an open `WatchDir` stream looks again.
pub const WATCH_POLL: Duration = Duration::from_millis(200);
/// Most watchers one sandbox may hold.
const MAX_WATCHERS: usize = 64;

fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::File,
        FileKind::Dir => FileType::Directory,
        FileKind::Symlink | FileKind::Other => FileType::Unspecified,
    }
}

fn entry(path: &str, kind: FileKind, size: u64, mode: u32, mtime: i64) -> EntryInfo {
    let t = file_type(kind);
    let type_bits = match kind {
        FileKind::Dir => 0o040000,
        FileKind::File => 0o100000,
        FileKind::Symlink => 0o120000,
        FileKind::Other => 0,
    };
    EntryInfo {
        name: path.rsplit('/').next().unwrap_or(path).to_owned(),
        kind: t,
        path: path.to_owned(),
        size: i64::try_from(size).unwrap_or(i64::MAX),
        mode: type_bits | (mode & 0o7777),
        permissions: permissions(t, mode),
        modified_time: rfc3339(mtime),
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{name}")
    } else {
        format!("{dir}/{name}")
    }
}

fn missing(e: firepit_guest_client::Error, path: &str) -> Error {
    if e.kind() == ErrorKind::NotFound {
        Error::Missing(format!("path {path} not found"))
    } else {
        Error::Guest(e)
    }
}

async fn stat(guest: &GuestClient, path: &str) -> Result<EntryInfo, Error> {
    let st = guest.stat(path).await.map_err(|e| missing(e, path))?;
    Ok(entry(path, st.kind, st.size, st.mode, st.mtime))
}

/// The entries below `root`, `depth` levels deep (directories are not
/// followed through symlinks), at most `max`.
async fn walk(
    guest: &GuestClient,
    root: &str,
    depth: u32,
    max: usize,
) -> Result<Vec<EntryInfo>, Error> {
    let mut out = Vec::new();
    let mut level = vec![root.to_owned()];
    for _ in 0..depth.max(1) {
        if level.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for dir in level {
            let entries = match guest.list_dir(&dir).await {
                Ok(e) => e,
                Err(e) if dir != root && e.kind() != ErrorKind::Closed => continue,
                Err(e) => return Err(missing(e, &dir)),
            };
            for e in entries {
                let path = join(&dir, &e.name);
                if e.kind == FileKind::Dir {
                    next.push(path.clone());
                }
                out.push(entry(&path, e.kind, e.size, e.mode, e.mtime));
                if out.len() > max {
                    return Err(Error::Relayed {
                        code: Code::ResourceExhausted,
                        message: format!("{root} holds more than {max} entries at that depth"),
                    });
                }
            }
        }
        level = next;
    }
    Ok(out)
}

/// What a watcher saw of each entry: kind, size, mode, mtime.
type Snapshot = BTreeMap<String, (FileType, i64, u32, String)>;

async fn snapshot(guest: &GuestClient, root: &str, recursive: bool) -> Result<Snapshot, Error> {
    let depth = if recursive { u32::MAX } else { 1 };
    let entries = walk(guest, root, depth, MAX_WATCH_ENTRIES).await?;
    let prefix = if root.ends_with('/') {
        root.to_owned()
    } else {
        format!("{root}/")
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let rel = e.path.strip_prefix(&prefix).unwrap_or(&e.path).to_owned();
            (rel, (e.kind, e.size, e.mode, e.modified_time))
        })
        .collect())
}

/// The events that turn `old` into `new`.
fn diff(old: &Snapshot, new: &Snapshot) -> Vec<FilesystemEvent> {
    let mut events = Vec::new();
    for (name, n) in new {
        match old.get(name) {
            None => events.push(FilesystemEvent {
                name: name.clone(),
                kind: EventType::Create,
            }),
            Some(o) if o.0 != n.0 => {
                events.push(FilesystemEvent {
                    name: name.clone(),
                    kind: EventType::Remove,
                });
                events.push(FilesystemEvent {
                    name: name.clone(),
                    kind: EventType::Create,
                });
            }
            Some(o) => {
                if o.1 != n.1 || o.3 != n.3 {
                    events.push(FilesystemEvent {
                        name: name.clone(),
                        kind: EventType::Write,
                    });
                }
                if o.2 != n.2 {
                    events.push(FilesystemEvent {
                        name: name.clone(),
                        kind: EventType::Chmod,
                    });
                }
            }
        }
    }
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        events.push(FilesystemEvent {
            name: name.clone(),
            kind: EventType::Remove,
        });
    }
    events
}

struct Watcher {
    sandbox: String,
    path: String,
    recursive: bool,
    last: tokio::sync::Mutex<Snapshot>,
}

/// The watchers made by `CreateWatcher`.
#[derive(Default)]
pub struct Watchers {
    map: Mutex<HashMap<String, Arc<Watcher>>>,
}

impl Watchers {
    fn get(&self, sandbox: &str, id: &str) -> Result<Arc<Watcher>, Error> {
        self.map
            .lock()
            .expect("watchers")
            .get(id)
            .filter(|w| w.sandbox == sandbox)
            .cloned()
            .ok_or_else(|| Error::Missing(format!("watcher {id} not found")))
    }

    /// Forgets a sandbox's watchers.
    pub fn forget(&self, sandbox: &str) {
        self.map
            .lock()
            .expect("watchers")
            .retain(|_, w| w.sandbox != sandbox);
    }
}

/// `POST /filesystem.Filesystem/{method}`.
pub async fn call(State(e2b): State<E2b>, Path(method): Path<String>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    let streaming = method == "WatchDir";
    let fail = |e: Error| {
        if streaming {
            connect::stream_error(&e)
        } else {
            connect::unary_error(&e)
        }
    };
    let sandbox = match sandbox_of(&headers, &e2b) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let bytes = match axum::body::to_bytes(body, connect::MAX_MESSAGE).await {
        Ok(b) => b,
        Err(_) => {
            return fail(Error::BadRequest(
                "the request is larger than the message limit".into(),
            ));
        }
    };
    let guest = match sandbox.guest(&e2b).await {
        Ok(g) => g,
        Err(e) => return fail(e),
    };
    // Relative paths start at the home of the user the call acts as.
    let account = match Who::of_headers(&headers) {
        Ok(who) => match acting_as(&e2b, &sandbox, &guest, who).await {
            Ok(a) => a,
            Err(e) => return fail(e),
        },
        Err(e) => return fail(e),
    };
    let home = home_of(account.as_ref()).to_owned();
    let abs_path = |p: &str| abs_path(p, &home);
    match method.as_str() {
        "WatchDir" => match watch_dir(&headers, &bytes, guest, &home).await {
            Ok(r) => r,
            Err(e) => connect::stream_error(&e),
        },
        "Stat" => connect::unary(
            async {
                let r: PathRequest = connect::unary_request(&headers, &bytes)?;
                Ok(EntryResponse {
                    entry: stat(&guest, &abs_path(&r.path)?).await?,
                })
            }
            .await,
        ),
        "MakeDir" => connect::unary(
            async {
                let r: PathRequest = connect::unary_request(&headers, &bytes)?;
                let path = abs_path(&r.path)?;
                match guest.stat(&path).await {
                    Ok(_) => {
                        return Err(Error::Relayed {
                            code: Code::AlreadyExists,
                            message: format!("path {path} already exists"),
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
                let made = users::missing_parents(&guest, &path).await;
                guest.mkdir(&path, true).await?;
                if let Some(a) = &account {
                    // The directory and the parents made for it are user's.
                    let mut paths = made;
                    paths.push(path.clone());
                    users::chown(&guest, a, &paths).await?;
                }
                Ok(EntryResponse {
                    entry: stat(&guest, &path).await?,
                })
            }
            .await,
        ),
        "Move" => connect::unary(
            async {
                let r: MoveRequest = connect::unary_request(&headers, &bytes)?;
                let (from, to) = (abs_path(&r.source)?, abs_path(&r.destination)?);
                guest
                    .rename(&from, &to)
                    .await
                    .map_err(|e| missing(e, &from))?;
                Ok(EntryResponse {
                    entry: stat(&guest, &to).await?,
                })
            }
            .await,
        ),
        "ListDir" => connect::unary(
            async {
                let r: ListDirRequest = connect::unary_request(&headers, &bytes)?;
                let path = abs_path(&r.path)?;
                Ok(ListDirResponse {
                    entries: walk(&guest, &path, r.depth, MAX_LIST_ENTRIES).await?,
                })
            }
            .await,
        ),
        "Remove" => connect::unary(
            async {
                let r: PathRequest = connect::unary_request(&headers, &bytes)?;
                let path = abs_path(&r.path)?;
                guest
                    .remove(&path, true)
                    .await
                    .map_err(|e| missing(e, &path))?;
                Ok(serde_json::json!({}))
            }
            .await,
        ),
        "CreateWatcher" => {
            connect::unary(create_watcher(&e2b, &sandbox, &headers, &bytes, &guest, &home).await)
        }
        "GetWatcherEvents" => connect::unary(
            async {
                let r: WatcherRequest = connect::unary_request(&headers, &bytes)?;
                let w = e2b.watchers().get(&sandbox.id, &r.watcher_id)?;
                let mut last = w.last.lock().await;
                let now = snapshot(&guest, &w.path, w.recursive).await?;
                let events = diff(&last, &now);
                *last = now;
                Ok(serde_json::json!({ "events": events }))
            }
            .await,
        ),
        "RemoveWatcher" => connect::unary(
            async {
                let r: WatcherRequest = connect::unary_request(&headers, &bytes)?;
                e2b.watchers().get(&sandbox.id, &r.watcher_id)?;
                e2b.watchers()
                    .map
                    .lock()
                    .expect("watchers")
                    .remove(&r.watcher_id);
                Ok(serde_json::json!({}))
            }
            .await,
        ),
        _ => connect::unary_error(&Error::Relayed {
            code: Code::Unimplemented,
            message: format!("filesystem.Filesystem/{method} is not a method firepit serves"),
        }),
    }
}

async fn create_watcher(
    e2b: &E2b,
    sandbox: &Sandbox,
    headers: &HeaderMap,
    bytes: &[u8],
    guest: &GuestClient,
    home: &str,
) -> Result<serde_json::Value, Error> {
    let r: WatchRequest = connect::unary_request(headers, bytes)?;
    let path = abs_path(&r.path, home)?;
    let st = guest.stat(&path).await.map_err(|e| missing(e, &path))?;
    if st.kind != FileKind::Dir {
        return Err(Error::BadRequest(format!("path {path} is not a directory")));
    }
    let first = snapshot(guest, &path, r.recursive).await?;
    let id = crate::state::new_token()[..16].to_owned();
    let mut map = e2b.watchers().map.lock().expect("watchers");
    if map.values().filter(|w| w.sandbox == sandbox.id).count() >= MAX_WATCHERS {
        return Err(Error::Relayed {
            code: Code::ResourceExhausted,
            message: format!("sandbox {} already has {MAX_WATCHERS} watchers", sandbox.id),
        });
    }
    map.insert(
        id.clone(),
        Arc::new(Watcher {
            sandbox: sandbox.id.clone(),
            path,
            recursive: r.recursive,
            last: tokio::sync::Mutex::new(first),
        }),
    );
    Ok(serde_json::json!({ "watcherId": id }))
}

async fn watch_dir(
    headers: &HeaderMap,
    bytes: &[u8],
    guest: GuestClient,
    home: &str,
) -> Result<Response, Error> {
    let r: WatchRequest = connect::stream_request(headers, bytes)?;
    let path = abs_path(&r.path, home)?;
    let st = guest.stat(&path).await.map_err(|e| missing(e, &path))?;
    if st.kind != FileKind::Dir {
        return Err(Error::BadRequest(format!("path {path} is not a directory")));
    }
    let mut last = snapshot(&guest, &path, r.recursive).await?;
    let (tx, rx) = mpsc::channel(16);
    let _ = tx
        .send(Item::Message(connect::message(&WatchDirResponse::Start {})))
        .await;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                () = tokio::time::sleep(WATCH_POLL) => {}
                () = tx.closed() => return,
            }
            let now = match snapshot(&guest, &path, r.recursive).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Item::End(Err(e))).await;
                    return;
                }
            };
            for ev in diff(&last, &now) {
                let m = connect::message(&WatchDirResponse::Filesystem(ev));
                if tx.send(Item::Message(m)).await.is_err() {
                    return;
                }
            }
            last = now;
        }
    });
    let opts = StreamOptions {
        keepalive: connect::keepalive(headers)
            .map(|every| (every, connect::message(&WatchDirResponse::Keepalive {}))),
        deadline: connect::deadline(headers),
    };
    Ok(connect::stream_response(rx, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_become_events() {
        let f = |size: i64, mode: u32| (FileType::File, size, mode, "t".to_owned());
        let old: Snapshot = [("a".to_owned(), f(1, 0o644)), ("b".to_owned(), f(1, 0o644))].into();
        let new: Snapshot = [("a".to_owned(), f(2, 0o600)), ("c".to_owned(), f(0, 0o644))].into();
        let kinds: Vec<_> = diff(&old, &new)
            .into_iter()
            .map(|e| (e.name, e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("a".into(), EventType::Write),
                ("a".into(), EventType::Chmod),
                ("c".into(), EventType::Create),
                ("b".into(), EventType::Remove),
            ]
        );
    }
}
