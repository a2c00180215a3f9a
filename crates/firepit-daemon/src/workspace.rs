//! What the web UI's files view asks of a machine beyond single file
//! operations: search across files, the changes since the baseline, a
//! folder as an archive, and the watch that tells the UI what changed.
//!
//! Search, changes and archives run tools in the machine (`rg` or `grep`,
//! `git`, `tar`) through the guest, never on the host: the machine's files
//! are the machine's, whatever their paths or symlinks say, and the daemon
//! reads only what those tools print. What they print is hostile input (the
//! machine's root may replace them): it is collected up to a bound
//! ([`SEARCH_OUTPUT`], [`CHANGES_OUTPUT`]), parsed without trusting its
//! shape, and whatever does not parse is left out.
//!
//! **Decision (the changes' baseline):** the session's start or its last
//! checkpoint ([`Since`], the route's `since`; the last checkpoint by
//! default, the start before the first one), as git trees kept inside the
//! machine. The product asks for what differs from the session's start (or
//! its last checkpoint), the view a person reviews an agent's work in: the
//! agent checkpoints before each turn that can change files, so the start
//! shows all its work, the last checkpoint its last turn; a repository's
//! `HEAD` would let the agent's commits hide its changes and leaves folders
//! without a repository without a baseline. So `BASELINE_SCRIPT`
//! (`baseline.sh`) keeps a private git dir in the machine
//! ([`BASELINE_GIT_DIR`]) whose ref `refs/firepit/baseline` is the last
//! commit taken (its message the label: `start` or `checkpoint NAME`), and
//! `refs/firepit/start` the first, kept for good (set once, never moved; a
//! dir from before that ref gets its `start`-labelled baseline), each of
//! one tree of the folders it covers ([`BASELINE_ROOTS`]), each git
//! repository nested in them taken by itself (its own `.gitignore`s; `git
//! add` alone would store it as a gitlink). The trees are made with `git
//! add -A` into index files of the private dir (kept as a stat cache, so
//! unchanged files are not read again), so a user's index, work tree, refs
//! and stash are never touched; a private dir, not the repository's own
//! store with a private ref, because it serves folders in no repository and
//! leaves the user's repository with nothing of ours. The daemon takes it
//! in the background after a create (`App::start_baseline`, behind the
//! session's lock) and just before each checkpoint of a running session
//! (`App::checkpoint_baseline`; undone when the checkpoint fails), so the
//! checkpoint holds it and a restore or a fork comes back with the right
//! baselines. Each one prunes what neither the start nor the last two
//! baselines hold. The diff snapshots the folder's root the same way into a
//! temporary object dir (the baseline's objects as alternates) and compares
//! the two trees under the folder, widened to its repository's top when it
//! is in one. Without a recorded baseline (a session made before them), or
//! outside what it covers, the answer is the repository's `HEAD` diff and
//! says why; the start asked for where it was not kept answers the last
//! checkpoint's and says so; without git, it says git is missing. Its work
//! is bounded like the rest: a timeout for each run (`BASELINE_TIMEOUT`,
//! `TOOL_TIMEOUT`), at most 100 nested repositories 5 levels down, the
//! output bounds, and common caches and dependency folders (`node_modules`,
//! `.cache` …) left out. The daemon never reads the private dir on the
//! host: what `git` prints is all it sees, as hostile as the rest.
//!
//! The watch ([`watch_files`]) takes the guest's reports of changed
//! directories and writes them to the session's log as `files_changed`,
//! merged so that at most one goes out per [`FILES_CHANGED_EVERY`], and
//! through the session's rate limit besides.

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use firepit_guest_client::{Exec, ExecEvent, ExecRequest, ExitStatus, GuestClient};
use firepit_wire::api::{Changes, FileChange, SearchMatch, SearchResult};
use firepit_wire::events::EventKind;
use firepit_wire::guest::{MAX_CHANGED_DIRS, MAX_WATCH_PATH};

use crate::{App, Error};

/// Most bytes of a search's output read; more is `truncated`.
pub const SEARCH_OUTPUT: usize = 1 << 20;
/// Most matches a search answers.
pub const MAX_MATCHES: usize = 1000;
/// Longest line text a match carries, in characters.
pub const MAX_LINE: usize = 500;
/// Most bytes of a diff read; more is `truncated`.
pub const CHANGES_OUTPUT: usize = 4 << 20;
/// New files a diff shows at most.
pub const MAX_NEW_FILES: usize = 200;
/// Most bytes of a tool's standard error kept for a note.
const NOTE: usize = 1000;
/// How long a search or a diff may run.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);
/// Least time between two `files_changed` events of a session.
pub const FILES_CHANGED_EVERY: Duration = Duration::from_millis(500);

/// What a tool run printed, each stream cut at its bound.
#[derive(Debug, Default)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Standard output went past its bound (the tool was stopped there).
    pub truncated: bool,
    pub status: Option<ExitStatus>,
}

/// Reads an exec's output up to `limit` bytes of stdout (and [`NOTE`] of
/// stderr); past the limit the exec is dropped, which kills it.
async fn collect(mut exec: Exec, limit: usize) -> Result<Output, Error> {
    let mut out = Output::default();
    loop {
        match exec.next_event().await.map_err(Error::Guest)? {
            Some(ExecEvent::Stdout(b)) => {
                let room = limit - out.stdout.len();
                if b.len() > room {
                    out.stdout.extend_from_slice(&b[..room]);
                    out.truncated = true;
                    return Ok(out);
                }
                out.stdout.extend_from_slice(&b);
            }
            Some(ExecEvent::Stderr(b)) => {
                let room = NOTE.saturating_sub(out.stderr.len());
                out.stderr.extend_from_slice(&b[..b.len().min(room)]);
            }
            Some(ExecEvent::Exit(status)) => {
                out.status = Some(status);
                return Ok(out);
            }
            None => return Ok(out),
        }
    }
}

fn tool(argv: &[&str], env: Vec<(String, String)>) -> ExecRequest {
    let mut req = ExecRequest::argv(argv.iter().copied());
    req.env = env;
    req.timeout_ms = Some(TOOL_TIMEOUT.as_millis() as u64);
    req
}

/// The search: ripgrep where the machine has it, else grep (over what
/// `find` lists). `$1` the folder, `$2` the text, `$3` `-i` or empty. The
/// first line names the tool. Neither leaves the folder's file system, so
/// `/proc` and `/sys` are not read.
const SEARCH_SCRIPT: &str = r#"dir=$1; q=$2; case_flag=$3
if command -v rg >/dev/null 2>&1; then
  echo rg
  exec rg --no-config --null --line-number --no-heading --color never --fixed-strings \
    --one-file-system --max-columns 500 --max-count 100 $case_flag -e "$q" -- "$dir"
fi
echo grep
find "$dir" -xdev \( -name .git -o -name node_modules \) -prune -o -type f -print0 |
  xargs -0 -r grep -HnIZF $case_flag -e "$q" --
exit 0
"#;

/// Searches the files under `dir` for lines holding `query` (literally;
/// case does not matter unless the query has a capital letter).
pub async fn search(guest: &GuestClient, dir: &str, query: &str) -> Result<SearchResult, Error> {
    let case = if query.chars().any(char::is_uppercase) {
        ""
    } else {
        "-i"
    };
    let exec = guest
        .exec(tool(
            &["/bin/sh", "-c", SEARCH_SCRIPT, "sh", dir, query, case],
            Vec::new(),
        ))
        .await
        .map_err(Error::starting)?;
    let out = collect(exec, SEARCH_OUTPUT).await?;
    Ok(parse_search(&out))
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// Parses what [`SEARCH_SCRIPT`] printed: the tool's name, then
/// `path\0line:text` lines.
pub(crate) fn parse_search(out: &Output) -> SearchResult {
    let mut lines = out.stdout.split(|&b| b == b'\n');
    let tool = match lines.next() {
        Some(b"rg") => "rg",
        _ => "grep",
    };
    let mut matches = Vec::new();
    let mut truncated = out.truncated;
    // The last piece of a cut-off output is a partial line.
    let complete: Vec<&[u8]> = lines.collect();
    let n = if out.truncated {
        complete.len().saturating_sub(1)
    } else {
        complete.len()
    };
    for line in &complete[..n] {
        let Some(nul) = line.iter().position(|&b| b == 0) else {
            continue;
        };
        let (path, rest) = (&line[..nul], &line[nul + 1..]);
        let Some(colon) = rest.iter().position(|&b| b == b':') else {
            continue;
        };
        let Ok(no) = std::str::from_utf8(&rest[..colon])
            .unwrap_or("")
            .parse::<u64>()
        else {
            continue;
        };
        if no == 0 {
            continue;
        }
        let path = String::from_utf8_lossy(path);
        if !path.starts_with('/') || path.len() > 4096 {
            continue;
        }
        if matches.len() == MAX_MATCHES {
            truncated = true;
            break;
        }
        let text = String::from_utf8_lossy(&rest[colon + 1..]);
        matches.push(SearchMatch {
            path: path.into_owned(),
            line: no,
            text: cut(text.trim_end_matches('\r'), MAX_LINE),
        });
    }
    let note = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let mut note = (!note.is_empty()).then(|| cut(&note, NOTE));
    if tool == "grep" {
        let grep = "ripgrep (rg) is not in this machine: searched with grep, which also reads hidden and ignored files";
        note = Some(match note {
            Some(n) => format!("{grep}. {n}"),
            None => grep.to_owned(),
        });
    }
    SearchResult {
        tool: tool.to_owned(),
        matches,
        truncated,
        note,
    }
}

/// The private git directory in the machine that holds the baseline (see
/// the module docs); no user's repository is written.
pub const BASELINE_GIT_DIR: &str = "/var/lib/firepit/baseline.git";
/// The folders the baseline covers, with the git repositories nested in
/// them: the home folder, where a session's repository is cloned, and the
/// other users' homes.
pub const BASELINE_ROOTS: &str = "/root /workspace /home";
/// How long taking a baseline may run (a checkpoint waits for it).
const BASELINE_TIMEOUT: Duration = Duration::from_secs(30);

/// The baseline's operations and the changes, run by `/bin/sh` in the
/// machine: `take`, `undo` and `diff` (its header comment says what each
/// prints).
const BASELINE_SCRIPT: &str = include_str!("baseline.sh");

/// The environment the baseline's git runs with: repositories made by the
/// machine's other users are still read (but their config runs no
/// file-system monitor, a program of theirs, as root), nothing waits on a
/// pager or refreshes a user's index, and the baseline's commits have an
/// author.
fn git_env() -> Vec<(String, String)> {
    [
        ("GIT_CONFIG_COUNT", "2"),
        ("GIT_CONFIG_KEY_0", "safe.directory"),
        ("GIT_CONFIG_VALUE_0", "*"),
        ("GIT_CONFIG_KEY_1", "core.fsmonitor"),
        ("GIT_CONFIG_VALUE_1", "false"),
        ("GIT_PAGER", "cat"),
        ("GIT_OPTIONAL_LOCKS", "0"),
        ("GIT_AUTHOR_NAME", "firepit"),
        ("GIT_AUTHOR_EMAIL", "firepit@localhost"),
        ("GIT_COMMITTER_NAME", "firepit"),
        ("GIT_COMMITTER_EMAIL", "firepit@localhost"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn baseline_request(op: &str, args: &[&str], timeout: Duration) -> ExecRequest {
    let mut argv = vec![
        "/bin/sh",
        "-c",
        BASELINE_SCRIPT,
        "sh",
        op,
        BASELINE_GIT_DIR,
        BASELINE_ROOTS,
    ];
    argv.extend_from_slice(args);
    let mut req = tool(&argv, git_env());
    req.cwd = Some("/".into());
    req.timeout_ms = Some(timeout.as_millis() as u64);
    req
}

/// What taking a baseline came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// The covered folders are the baseline now.
    Taken,
    /// There was one already and it was asked to be kept.
    Kept,
    /// git is not in the machine: there is no baseline.
    NoGit,
    /// It failed (timed out, a full disk …): the baseline before stays.
    Failed(String),
}

/// The label a baseline taken before checkpoint `name` carries.
pub fn checkpoint_label(name: &str) -> String {
    format!("checkpoint {name}")
}

/// The label of the baseline taken when a session starts.
pub const START_LABEL: &str = "start";

/// Makes the covered folders' files, as they are now, the baseline
/// labelled `label`; with `only_if_none`, a baseline already there is kept.
pub async fn take_baseline(
    guest: &GuestClient,
    label: &str,
    only_if_none: bool,
) -> Result<Taken, Error> {
    let flag = if only_if_none { "1" } else { "0" };
    let exec = guest
        .exec(baseline_request("take", &[label, flag], BASELINE_TIMEOUT))
        .await
        .map_err(Error::starting)?;
    let out = collect(exec, NOTE).await?;
    Ok(parse_taken(&out))
}

/// Reads what `take` printed.
pub(crate) fn parse_taken(out: &Output) -> Taken {
    let text = String::from_utf8_lossy(&out.stdout);
    let ok = out.status.as_ref().is_some_and(|s| s.code == Some(0));
    match text.trim_end() {
        "kept" if ok => Taken::Kept,
        "nogit" if ok => Taken::NoGit,
        t if ok && t.starts_with("taken ") => Taken::Taken,
        _ => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            Taken::Failed(cut(
                &format!(
                    "status {:?}: {why}",
                    out.status.as_ref().and_then(|s| s.code)
                ),
                NOTE,
            ))
        }
    }
}

/// Puts back the baseline the last `take` replaced (its checkpoint was not
/// made after all).
pub async fn undo_baseline(guest: &GuestClient) -> Result<(), Error> {
    let exec = guest
        .exec(baseline_request("undo", &[], BASELINE_TIMEOUT))
        .await
        .map_err(Error::starting)?;
    collect(exec, NOTE).await?;
    Ok(())
}

impl App {
    /// The baseline of a session that has just been made (after its
    /// repository's clone), taken in the background by `create`: it waits
    /// for the session's lock, so a checkpoint asked meanwhile comes after
    /// it, and keeps a baseline already there.
    pub(crate) async fn start_baseline(&self, id: &str) {
        let lock = self.sessions().lock_for(id);
        let _guard = lock.lock().await;
        let running = self
            .store()
            .session(id)
            .is_ok_and(|s| s.state == firepit_wire::api::SessionState::Running);
        if !running {
            return;
        }
        let taken = match self.guest(id).await {
            Ok(g) => take_baseline(&g, START_LABEL, true).await,
            Err(e) => Err(e),
        };
        match taken {
            Ok(Taken::Failed(why)) => {
                tracing::warn!(session = %id, %why, "could not take the changes' baseline at the start");
            }
            Ok(t) => {
                tracing::debug!(session = %id, taken = ?t, "the changes' baseline at the start")
            }
            // No `/bin/sh` in the image: no baseline, as without git.
            Err(e @ Error::NotInMachine(_)) => {
                tracing::debug!(session = %id, error = %crate::error::chain(&e), "no changes' baseline at the start");
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %crate::error::chain(&e), "could not take the changes' baseline at the start");
            }
        }
    }

    /// The baseline taken just before checkpoint `label` of a running
    /// session, so the checkpoint holds it. Whether one was taken (and
    /// should be undone if the checkpoint fails); a failure leaves the one
    /// before and the checkpoint goes on.
    pub(crate) async fn checkpoint_baseline(&self, id: &str, label: &str) -> bool {
        let taken = match self.guest(id).await {
            Ok(g) => take_baseline(&g, &checkpoint_label(label), false).await,
            Err(e) => Err(e),
        };
        match taken {
            Ok(Taken::Taken) => true,
            Ok(Taken::Failed(why)) => {
                tracing::warn!(session = %id, %why, "could not take the changes' baseline before a checkpoint");
                false
            }
            Ok(_) | Err(Error::NotInMachine(_)) => false,
            Err(e) => {
                tracing::warn!(session = %id, error = %crate::error::chain(&e), "could not take the changes' baseline before a checkpoint");
                false
            }
        }
    }

    /// Puts the baseline before [`App::checkpoint_baseline`]'s back.
    pub(crate) async fn undo_checkpoint_baseline(&self, id: &str) {
        let undone = match self.guest(id).await {
            Ok(g) => undo_baseline(&g).await,
            Err(e) => Err(e),
        };
        if let Err(e) = undone {
            tracing::warn!(session = %id, error = %crate::error::chain(&e), "could not put the changes' baseline back");
        }
    }
}

/// Which baseline the changes are compared with (the changes route's
/// `since`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Since {
    /// The session's start, kept for good.
    Start,
    /// The last checkpoint's baseline; the start before the first one.
    #[default]
    Checkpoint,
}

impl Since {
    /// Reads the route's `since`: `start` or `checkpoint`.
    pub fn parse(s: &str) -> Result<Since, Error> {
        match s {
            "start" => Ok(Since::Start),
            "checkpoint" => Ok(Since::Checkpoint),
            other => Err(Error::BadRequest(format!(
                "since {:?} is not a baseline: it is `start` (the session's start) or `checkpoint` (its last checkpoint)",
                cut(other, 100)
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Since::Start => "start",
            Since::Checkpoint => "checkpoint",
        }
    }
}

/// What differs in folder `dir` (widened to its git repository's top) from
/// the session's baseline `since` picks; without one, from the
/// repository's `HEAD`.
pub async fn changes(guest: &GuestClient, dir: &str, since: Since) -> Result<Changes, Error> {
    let new = MAX_NEW_FILES.to_string();
    let exec = guest
        .exec(baseline_request(
            "diff",
            &[dir, &new, since.as_str()],
            TOOL_TIMEOUT,
        ))
        .await
        .map_err(Error::starting)?;
    let out = collect(exec, CHANGES_OUTPUT).await?;
    Ok(parse_changes(&out))
}

fn no_baseline(note: &str) -> Changes {
    Changes {
        baseline: "none".into(),
        checkpoint: None,
        baselines: Vec::new(),
        taken_at: None,
        root: None,
        head: None,
        files: Vec::new(),
        truncated: false,
        note: Some(note.into()),
    }
}

/// Why the answer is against `HEAD` and not the baseline.
fn fallback_note(why: &[u8]) -> Option<String> {
    match why {
        b"nobase" => Some(
            "No baseline was recorded for this session (it was made before baselines were, git was missing at its start, or taking it failed: the daemon's log says why): these are the changes since the repository's last commit.".into(),
        ),
        b"outside" => Some(format!(
            "The baseline covers {}: outside them these are the changes since the repository's last commit.",
            BASELINE_ROOTS.replace(' ', ", ")
        )),
        _ => None,
    }
}

/// The baseline's label as `take` wrote it, read back as `%ct %s`: its
/// kind, the checkpoint it came before, and when it was taken.
fn parse_label(label: &[u8]) -> (String, Option<String>, Option<i64>) {
    let label = String::from_utf8_lossy(label);
    let (time, subject) = label.split_once(' ').unwrap_or((&label, ""));
    let taken_at = time.parse::<i64>().ok();
    let plain: String = subject.chars().filter(|c| !c.is_control()).collect();
    match plain.strip_prefix("checkpoint ") {
        Some(name) => (
            "checkpoint".into(),
            (!name.is_empty()).then(|| cut(name, 200)),
            taken_at,
        ),
        None if plain == START_LABEL => ("start".into(), None, taken_at),
        None => ("checkpoint".into(), None, taken_at),
    }
}

/// Parses what the `diff` operation of [`BASELINE_SCRIPT`] printed.
pub(crate) fn parse_changes(out: &Output) -> Changes {
    let text = &out.stdout;
    match text.as_slice() {
        b"nodir\n" => return no_baseline("There is no folder at that path."),
        b"nogit\n" => {
            return no_baseline(
                "git is not in this machine: the changes are kept and compared with git, so there is no baseline.",
            );
        }
        b"norepo nobase\n" => {
            return no_baseline(
                "No baseline was recorded for this session (it was made before baselines were, git was missing at its start, or taking it failed: the daemon's log says why), and the folder is not in a git repository to compare with.",
            );
        }
        b"norepo outside\n" => {
            return no_baseline(&format!(
                "The baseline covers {}, and this folder is outside them and not in a git repository.",
                BASELINE_ROOTS.replace(' ', ", ")
            ));
        }
        _ => {}
    }
    let unreadable = || {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        no_baseline(&format!(
            "git's answer could not be read. {}",
            cut(&why, NOTE)
        ))
    };
    let (kind, top, label_or_head, new, have, why, diff) = if text.starts_with(b"base\0") {
        let mut f = text.splitn(7, |&b| b == 0).skip(1);
        let (Some(top), Some(label), Some(new), Some(have), Some(why), Some(diff)) =
            (f.next(), f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return unreadable();
        };
        ("base", top, label, new, have, why, diff)
    } else if text.starts_with(b"repo\0") {
        let mut f = text.splitn(6, |&b| b == 0).skip(1);
        let (Some(top), Some(head), Some(new), Some(why), Some(diff)) =
            (f.next(), f.next(), f.next(), f.next(), f.next())
        else {
            return unreadable();
        };
        ("repo", top, head, new, &b""[..], why, diff)
    } else {
        return unreadable();
    };
    let new: usize = std::str::from_utf8(new)
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let diff = String::from_utf8_lossy(diff);
    let mut files = split_diff(&diff);
    if out.truncated {
        // The last file's diff was cut.
        files.pop();
    }
    let mut notes = Vec::new();
    if kind == "repo" {
        notes.extend(fallback_note(why));
    } else if why == b"nostart" {
        notes.push(
            "The session's start was not kept (it was made before starts were, or taking it failed): these are the changes since its last checkpoint.".into(),
        );
    }
    if out.truncated {
        notes.push(format!(
            "The diff is larger than {} MiB: the rest is left out.",
            CHANGES_OUTPUT >> 20
        ));
    }
    if new > MAX_NEW_FILES {
        notes.push(format!(
            "{new} new files: the first {MAX_NEW_FILES} are shown."
        ));
    }
    let (baseline, checkpoint, taken_at, head) = if kind == "base" {
        let (b, c, t) = parse_label(label_or_head);
        (b, c, t, None)
    } else {
        let head = cut(&String::from_utf8_lossy(label_or_head), 64);
        (
            "git".to_owned(),
            None,
            None,
            (!head.is_empty()).then_some(head),
        )
    };
    // Only the two names, once each, in this order.
    let have = String::from_utf8_lossy(have);
    let baselines = ["start", "checkpoint"]
        .into_iter()
        .filter(|b| kind == "base" && have.split(' ').any(|h| h == *b))
        .map(str::to_owned)
        .collect();
    Changes {
        baseline,
        checkpoint,
        baselines,
        taken_at,
        root: Some(cut(&String::from_utf8_lossy(top), 4096)),
        head,
        files,
        truncated: out.truncated || new > MAX_NEW_FILES,
        note: (!notes.is_empty()).then(|| notes.join(" ")),
    }
}

/// A unified diff (`git diff` output) split per file.
pub(crate) fn split_diff(diff: &str) -> Vec<FileChange> {
    let mut files: Vec<FileChange> = Vec::new();
    let mut current: Option<String> = None;
    for line in diff.split_inclusive('\n') {
        if line.starts_with("diff --git ") {
            if let Some(text) = current.take() {
                files.push(file_change(text));
            }
            current = Some(String::new());
        }
        if let Some(text) = current.as_mut() {
            text.push_str(line);
        }
    }
    if let Some(text) = current {
        files.push(file_change(text));
    }
    files
}

fn file_change(diff: String) -> FileChange {
    let mut status = "modified";
    let (mut from, mut to, mut renamed_to) = (None, None, None);
    for line in diff.lines().take_while(|l| !l.starts_with("@@")) {
        if line.starts_with("new file mode") {
            status = "added";
        } else if line.starts_with("deleted file mode") {
            status = "deleted";
        } else if let Some(p) = line.strip_prefix("rename to ") {
            status = "renamed";
            renamed_to = Some(p.to_owned());
        } else if let Some(p) = line.strip_prefix("+++ ") {
            to = p.strip_prefix("b/").map(str::to_owned);
        } else if let Some(p) = line.strip_prefix("--- ") {
            from = p.strip_prefix("a/").map(str::to_owned);
        }
    }
    let header = diff.lines().next().unwrap_or_default();
    // `diff --git a/X b/X`: the path after the last ` b/`, for diffs without
    // `+++` lines (binary files, mode changes).
    let from_header = header
        .rfind(" b/")
        .map(|at| header[at + 3..].to_owned())
        .unwrap_or_default();
    let path = renamed_to.or(to).or(from).unwrap_or(from_header);
    FileChange {
        path,
        status: status.to_owned(),
        diff,
    }
}

/// The archive of a folder: `tar` in the machine, run from its parent.
pub fn archive_request(dir: &str) -> ExecRequest {
    let trimmed = dir.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some(("", name)) if !name.is_empty() => ("/", name),
        Some((parent, name)) if !name.is_empty() => (parent, name),
        _ => ("/", "."),
    };
    // `./name`: a name that starts with `-` is not an option.
    let member = if name == "." {
        ".".to_owned()
    } else {
        format!("./{name}")
    };
    // `--one-file-system`: the machine's own files, not /proc or /sys.
    ExecRequest::argv([
        "tar",
        "--one-file-system",
        "-C",
        parent,
        "-cf",
        "-",
        &member,
    ])
}

/// The name a downloaded archive of `dir` gets: its last component, with
/// what is not a plain character replaced, and `.tar`.
pub fn archive_name(dir: &str) -> String {
    let name = dir
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default();
    let clean: String = name
        .chars()
        .take(100)
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let clean = clean.trim_start_matches('.');
    format!("{}.tar", if clean.is_empty() { "files" } else { clean })
}

/// The changed directories waiting to go out as one event.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ChangedDirs {
    dirs: BTreeSet<String>,
    overflow: bool,
}

impl ChangedDirs {
    pub(crate) fn add(&mut self, dirs: Vec<String>, overflow: bool) {
        self.overflow |= overflow;
        for d in dirs {
            if d.len() > MAX_WATCH_PATH {
                continue;
            }
            if self.dirs.len() >= MAX_CHANGED_DIRS {
                self.overflow = true;
                break;
            }
            self.dirs.insert(d);
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.dirs.is_empty() && !self.overflow
    }

    pub(crate) fn take(&mut self) -> EventKind {
        let taken = std::mem::take(self);
        EventKind::FilesChanged {
            dirs: taken.dirs.into_iter().collect(),
            overflow: taken.overflow,
        }
    }
}

/// Writes the machine's file changes to the session's log until the guest
/// ends the watch (the session stops).
pub(crate) async fn watch_files(app: &App, id: &str) -> Result<(), Error> {
    let guest = app.guest(id).await?;
    let mut watch = guest.watch_files(None).await.map_err(Error::Guest)?;
    let mut pending = ChangedDirs::default();
    let mut next_out = tokio::time::Instant::now();
    let mut due: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            report = watch.next() => match report.map_err(Error::Guest)? {
                Some(report) => {
                    pending.add(report.dirs, report.overflow);
                    if !pending.is_empty() && due.is_none() {
                        due = Some(next_out.max(tokio::time::Instant::now()));
                    }
                }
                None => return Ok(()),
            },
            () = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                due = None;
                app.events().append_limited(id, pending.take())?;
                next_out = tokio::time::Instant::now() + FILES_CHANGED_EVERY;
            }
        }
    }
}

/// An exec's standard output as a byte stream that fails (cutting the
/// download short) when the command does not end with status 0.
pub fn stdout_stream(
    exec: Exec,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(Some(exec), |state| async move {
        let mut exec = state?;
        loop {
            return match exec.next_event().await {
                Ok(Some(ExecEvent::Stdout(b))) => Some((Ok(b), Some(exec))),
                Ok(Some(ExecEvent::Stderr(_))) => continue,
                Ok(Some(ExecEvent::Exit(status))) if status.code == Some(0) => None,
                Ok(Some(ExecEvent::Exit(status))) => Some((
                    Err(std::io::Error::other(format!(
                        "the archive failed: {status:?}"
                    ))),
                    None,
                )),
                Ok(None) => Some((Err(std::io::Error::other("the machine went away")), None)),
                Err(e) => Some((Err(std::io::Error::other(e)), None)),
            };
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(stdout: &[u8], truncated: bool) -> Output {
        Output {
            stdout: stdout.to_vec(),
            truncated,
            ..Output::default()
        }
    }

    #[test]
    fn search_output_parses_into_matches_and_bad_lines_are_left_out() {
        let r = parse_search(&out(
            b"rg\n/root/a.py\x0012:  print('hi')\n/root/b:c.txt\x003:x:y\nno-nul-here:1:x\n/root/c\x00NaN:x\n/root/d\x000:x\nrel\x001:x\n",
            false,
        ));
        assert_eq!(r.tool, "rg");
        assert_eq!(
            r.matches,
            vec![
                SearchMatch {
                    path: "/root/a.py".into(),
                    line: 12,
                    text: "  print('hi')".into()
                },
                SearchMatch {
                    path: "/root/b:c.txt".into(),
                    line: 3,
                    text: "x:y".into()
                },
            ]
        );
        assert!(!r.truncated && r.note.is_none());
    }

    #[test]
    fn grep_says_so_and_a_cut_output_drops_its_partial_line() {
        let long = "x".repeat(2000);
        let text = format!("grep\n/a\x001:{long}\n/b\x002:par");
        let r = parse_search(&out(text.as_bytes(), true));
        assert_eq!(r.tool, "grep");
        assert_eq!(r.matches.len(), 1);
        assert_eq!(r.matches[0].text.chars().count(), MAX_LINE + 1);
        assert!(r.truncated);
        assert!(
            r.note
                .unwrap()
                .contains("ripgrep (rg) is not in this machine")
        );
    }

    const DIFF: &str = "diff --git a/src/main.rs b/src/main.rs
index 1..2 100644
--- a/src/main.rs
+++ b/src/main.rs
@@ -1 +1 @@
-old
+new
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/old name b/new name
similarity index 100%
rename from old name
rename to new name
diff --git a/logo.png b/logo.png
index 1..2 100644
Binary files a/logo.png and b/logo.png differ
diff --git a/fresh.txt b/fresh.txt
new file mode 100644
--- /dev/null
+++ b/fresh.txt
@@ -0,0 +1 @@
+hello
";

    #[test]
    fn a_diff_splits_per_file_with_path_and_status() {
        let files = split_diff(DIFF);
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.path.as_str(), f.status.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("src/main.rs", "modified"),
                ("gone.txt", "deleted"),
                ("new name", "renamed"),
                ("logo.png", "modified"),
                ("fresh.txt", "added"),
            ]
        );
        assert!(files[0].diff.contains("+new\n"));
        assert!(files[4].diff.ends_with("+hello\n"));
    }

    #[test]
    fn baseline_answers_parse_with_their_label() {
        let text = format!("base\0/root/app\x001796000000 start\x000\0start\0\0{DIFF}");
        let c = parse_changes(&out(text.as_bytes(), false));
        assert_eq!(c.baseline, "start");
        assert_eq!(c.baselines, ["start"]);
        assert_eq!(c.checkpoint, None);
        assert_eq!(c.taken_at, Some(1796000000));
        assert_eq!(c.root.as_deref(), Some("/root/app"));
        assert_eq!(c.head, None);
        assert_eq!(c.files.len(), 5);
        assert!(!c.truncated && c.note.is_none());

        let text = format!(
            "base\0/w\x001796000001 checkpoint before\x07 turn 3\x00500\0start checkpoint\0\0{DIFF}"
        );
        let c = parse_changes(&out(text.as_bytes(), true));
        assert_eq!(c.baseline, "checkpoint");
        assert_eq!(c.baselines, ["start", "checkpoint"]);
        assert_eq!(c.checkpoint.as_deref(), Some("before turn 3"));
        assert_eq!(c.taken_at, Some(1796000001));
        // Cut off: the last file is left out, and the note says so.
        assert_eq!(c.files.len(), 4);
        assert!(c.truncated);
        let note = c.note.unwrap();
        assert!(
            note.contains("500 new files") && note.contains("MiB"),
            "{note}"
        );

        // A label that is no label, or a long one, is read without trust.
        let long = "x".repeat(5000);
        let text = format!("base\0/w\0junk checkpoint {long}\x000\0checkpoint start x start\0\0");
        let c = parse_changes(&out(text.as_bytes(), false));
        assert_eq!((c.baseline.as_str(), c.taken_at), ("checkpoint", None));
        assert_eq!(c.checkpoint.unwrap().chars().count(), 201);
        assert_eq!(c.baselines, ["start", "checkpoint"]);
        assert!(c.files.is_empty());

        // The start was asked for and is not kept: the last checkpoint's,
        // and the note says so.
        let text = "base\0/w\x001796000001 checkpoint a\x000\0checkpoint\0nostart\0";
        let c = parse_changes(&out(text.as_bytes(), false));
        assert_eq!(c.baseline, "checkpoint");
        assert_eq!(c.baselines, ["checkpoint"]);
        assert!(c.note.unwrap().contains("start was not kept"));
        // The old shape (no baselines, no why) is not read as a diff.
        let c = parse_changes(&out(b"base\0/w\x001 start\x000\0", false));
        assert_eq!(c.baseline, "none");
    }

    #[test]
    fn head_answers_say_why_there_is_no_baseline() {
        let text = format!("repo\0/root/app\0abc123\x000\0nobase\0{DIFF}");
        let c = parse_changes(&out(text.as_bytes(), false));
        assert_eq!(c.baseline, "git");
        assert!(c.baselines.is_empty());
        assert_eq!(c.root.as_deref(), Some("/root/app"));
        assert_eq!(c.head.as_deref(), Some("abc123"));
        assert_eq!(c.files.len(), 5);
        assert!(c.note.unwrap().contains("No baseline was recorded"));

        let text = format!("repo\0/srv/app\0\x00500\0outside\0{DIFF}");
        let c = parse_changes(&out(text.as_bytes(), true));
        assert_eq!(c.head, None);
        assert_eq!(c.files.len(), 4);
        assert!(c.truncated);
        let note = c.note.unwrap();
        assert!(
            note.contains("/root, /workspace, /home") && note.contains("500 new files"),
            "{note}"
        );

        for (answer, words) in [
            (&b"norepo nobase\n"[..], "not in a git repository"),
            (b"norepo outside\n", "outside them"),
            (b"nogit\n", "git is not in this machine"),
            (b"nodir\n", "no folder at that path"),
            (b"garbage", "could not be read"),
            (b"base\0/only-a-top", "could not be read"),
            (b"repo\0/r\0h\x001\0", "could not be read"),
            (b"", "could not be read"),
        ] {
            let c = parse_changes(&out(answer, false));
            assert_eq!(c.baseline, "none");
            assert!(c.files.is_empty());
            assert!(c.note.unwrap().contains(words), "{answer:?}");
        }
    }

    #[test]
    fn junk_answers_never_panic() {
        // A fixed generator: the same junk every run.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut byte = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly the bytes the format is made of.
            let alphabet = b"\0\n ab/+-@diff --git rename to \xff\xc3";
            alphabet[(x % alphabet.len() as u64) as usize]
        };
        for i in 0..2000 {
            let prefix: &[u8] = match i % 3 {
                0 => b"base\0",
                1 => b"repo\0",
                _ => b"",
            };
            let mut text = prefix.to_vec();
            text.extend((0..(i % 300)).map(|_| byte()));
            let c = parse_changes(&out(&text, i % 2 == 0));
            assert!(["start", "checkpoint", "git", "none"].contains(&c.baseline.as_str()));
            let _ = parse_taken(&out(&text, false));
        }
    }

    #[test]
    fn taking_a_baseline_reads_only_what_it_expects() {
        let done = |stdout: &[u8], code: i32| Output {
            stdout: stdout.to_vec(),
            stderr: b"disk full".to_vec(),
            truncated: false,
            status: Some(ExitStatus {
                code: Some(code),
                signal: None,
                timed_out: false,
            }),
        };
        assert_eq!(parse_taken(&done(b"taken 0123abcd\n", 0)), Taken::Taken);
        assert_eq!(parse_taken(&done(b"kept\n", 0)), Taken::Kept);
        assert_eq!(parse_taken(&done(b"nogit\n", 0)), Taken::NoGit);
        for (stdout, code) in [(&b"taken x\n"[..], 1), (b"", 0), (b"what\n", 0)] {
            let Taken::Failed(why) = parse_taken(&done(stdout, code)) else {
                panic!("{stdout:?} is no baseline");
            };
            assert!(why.contains("disk full"));
        }
        assert!(matches!(parse_taken(&Output::default()), Taken::Failed(_)));
        assert_eq!(checkpoint_label("x y"), "checkpoint x y");
    }

    /// Runs [`BASELINE_SCRIPT`] with the host's `/bin/sh` and `git`, the
    /// private dir and the roots under `tmp` (what the machine does, on
    /// folders this test made).
    fn script(tmp: &std::path::Path, op: &str, args: &[&str]) -> Output {
        let g = tmp.join("baseline.git");
        let roots = format!("{0}/root {0}/workspace", tmp.display());
        let done = std::process::Command::new("/bin/sh")
            .args(["-c", BASELINE_SCRIPT, "sh", op])
            .arg(&g)
            .arg(&roots)
            .args(args)
            .envs(git_env())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .expect("/bin/sh runs");
        Output {
            stdout: done.stdout,
            stderr: done.stderr,
            truncated: false,
            status: Some(ExitStatus {
                code: done.status.code(),
                signal: None,
                timed_out: false,
            }),
        }
    }

    fn sh(dir: &std::path::Path, line: &str) {
        let ok = std::process::Command::new("/bin/sh")
            .args(["-c", line])
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .status()
            .unwrap()
            .success();
        assert!(ok, "{line}");
    }

    fn names(c: &Changes) -> Vec<(&str, &str)> {
        let mut v: Vec<_> = c
            .files
            .iter()
            .map(|f| (f.path.as_str(), f.status.as_str()))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn the_baseline_script_snapshots_compares_and_undoes() {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        let dir = |p: &str| format!("{}/{p}", t.display());
        sh(
            t,
            "mkdir -p root/proj root/node_modules/x workspace && echo hi > root/a.txt && \
             echo junk > root/node_modules/x/i.js && cd root/proj && echo old > notes.txt && \
             echo bye > gone.txt && git init -q && git add -A && \
             git -c user.name=t -c user.email=t@t commit -qm s",
        );
        // No baseline yet: the repository's HEAD, and a plain folder has none.
        let c = parse_changes(&script(t, "diff", &[&dir("root/proj"), "200"]));
        assert_eq!(c.baseline, "git");
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200"]));
        assert_eq!(c.baseline, "none");

        assert_eq!(
            parse_taken(&script(t, "take", &["start", "1"])),
            Taken::Taken
        );
        assert_eq!(
            parse_taken(&script(t, "take", &["start", "1"])),
            Taken::Kept
        );

        // The repository's own commit hides nothing; node_modules is left out.
        sh(
            t,
            "cd root/proj && echo new > notes.txt && rm gone.txt && echo f > fresh.txt && \
             git add -A && git -c user.name=t -c user.email=t@t commit -qm agent && \
             echo more > ../node_modules/x/i.js && echo b > ../b.txt",
        );
        let c = parse_changes(&script(
            t,
            "diff",
            &[&format!("{}/", dir("root/proj")), "200"],
        ));
        assert_eq!(c.baseline, "start");
        assert_eq!(c.root.as_deref(), Some(dir("root/proj").as_str()));
        assert_eq!(
            names(&c),
            [
                ("fresh.txt", "added"),
                ("gone.txt", "deleted"),
                ("notes.txt", "modified")
            ]
        );
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200"]));
        assert_eq!(
            names(&c),
            [
                ("b.txt", "added"),
                ("proj/fresh.txt", "added"),
                ("proj/gone.txt", "deleted"),
                ("proj/notes.txt", "modified"),
            ]
        );
        // At most MAX_NEW of the new files, and the count says how many.
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "1"]));
        assert_eq!(c.files.len(), 3);

        // A checkpoint's baseline: only what came after it.
        assert_eq!(
            parse_taken(&script(t, "take", &["checkpoint cp one", "0"])),
            Taken::Taken
        );
        sh(t, "echo x > workspace/w.txt && echo again >> root/a.txt");
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200"]));
        assert_eq!(c.baseline, "checkpoint");
        assert_eq!(c.checkpoint.as_deref(), Some("cp one"));
        assert_eq!(names(&c), [("a.txt", "modified")]);
        let c = parse_changes(&script(t, "diff", &[&dir("workspace"), "200"]));
        assert_eq!(names(&c), [("w.txt", "added")]);
        assert_eq!(c.baselines, ["start", "checkpoint"]);
        // Since the start: what came before the checkpoint too.
        let since_start = [
            ("a.txt", "modified"),
            ("b.txt", "added"),
            ("proj/fresh.txt", "added"),
            ("proj/gone.txt", "deleted"),
            ("proj/notes.txt", "modified"),
        ];
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200", "start"]));
        assert_eq!(c.baseline, "start");
        assert_eq!(names(&c), since_start);
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200", "checkpoint"]));
        assert_eq!(names(&c), [("a.txt", "modified")]);

        // Undone (its checkpoint failed): the start is the baseline again.
        script(t, "undo", &[]);
        let c = parse_changes(&script(t, "diff", &[&dir("root/proj"), "200"]));
        assert_eq!(c.baseline, "start");
        assert_eq!(c.baselines, ["start"]);
        assert_eq!(c.files.len(), 3);

        // The start is kept for good: two checkpoints on (each prunes what
        // neither it nor the one before holds), it still answers.
        for label in ["checkpoint cp two", "checkpoint cp three"] {
            assert_eq!(parse_taken(&script(t, "take", &[label, "0"])), Taken::Taken);
        }
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200", "checkpoint"]));
        assert_eq!(c.checkpoint.as_deref(), Some("cp three"));
        assert!(c.files.is_empty());
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200", "start"]));
        assert_eq!((c.baseline.as_str(), c.note.as_deref()), ("start", None));
        assert_eq!(names(&c), since_start);
        // A private dir from before the start was kept: its `start`
        // baseline is the start, and the next checkpoint keeps it.
        let g = t.join("baseline.git");
        sh(
            &g,
            "git update-ref refs/firepit/baseline refs/firepit/start && \
             git update-ref -d refs/firepit/start && git update-ref -d refs/firepit/previous",
        );
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200", "start"]));
        assert_eq!((c.baseline.as_str(), c.baselines.len()), ("start", 1));
        script(t, "take", &["checkpoint cp four", "0"]);
        script(t, "take", &["checkpoint cp five", "0"]);
        let c = parse_changes(&script(t, "diff", &[&dir("root"), "200", "start"]));
        assert_eq!(c.baselines, ["start", "checkpoint"]);
        assert_eq!(names(&c), since_start);

        // The user's repository got nothing of the baseline.
        let refs = std::process::Command::new("git")
            .args(["for-each-ref", "--format=%(refname)"])
            .current_dir(t.join("root/proj"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&refs.stdout).lines().count(), 1);

        // Outside the roots, in no repository: no baseline, and why.
        let c = parse_changes(&script(t, "diff", &["/", "200"]));
        assert_eq!(c.baseline, "none");
        assert!(c.note.unwrap().contains("outside them"));
        let c = parse_changes(&script(t, "diff", &[&dir("nothing"), "200"]));
        assert!(c.note.unwrap().contains("no folder"));
        // The views left nothing behind.
        let left: Vec<_> = std::fs::read_dir(t.join("baseline.git"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("view."))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn archives_run_tar_from_the_parent_and_get_a_plain_name() {
        let argv = |r: ExecRequest| match r.command {
            firepit_guest_client::Command::Argv(a) => a,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            argv(archive_request("/root/app/")),
            [
                "tar",
                "--one-file-system",
                "-C",
                "/root",
                "-cf",
                "-",
                "./app"
            ]
        );
        assert_eq!(
            argv(archive_request("/srv")),
            ["tar", "--one-file-system", "-C", "/", "-cf", "-", "./srv"]
        );
        assert_eq!(
            argv(archive_request("/")),
            ["tar", "--one-file-system", "-C", "/", "-cf", "-", "."]
        );
        assert_eq!(
            argv(archive_request("/root/-rf")),
            [
                "tar",
                "--one-file-system",
                "-C",
                "/root",
                "-cf",
                "-",
                "./-rf"
            ]
        );
        assert_eq!(archive_name("/root/my app\"x"), "my_app_x.tar");
        assert_eq!(archive_name("/"), "files.tar");
        assert_eq!(archive_name("/root/.."), "files.tar");
    }

    #[test]
    fn changed_dirs_merge_and_stay_bounded() {
        let mut c = ChangedDirs::default();
        assert!(c.is_empty());
        c.add(
            vec![
                "/root".into(),
                "/root".into(),
                "x".repeat(MAX_WATCH_PATH + 1),
            ],
            false,
        );
        assert_eq!(
            c.take(),
            EventKind::FilesChanged {
                dirs: vec!["/root".into()],
                overflow: false
            }
        );
        assert!(c.is_empty());
        c.add((0..100).map(|i| format!("/d{i}")).collect(), false);
        let EventKind::FilesChanged { dirs, overflow } = c.take() else {
            unreachable!()
        };
        assert_eq!(dirs.len(), MAX_CHANGED_DIRS);
        assert!(overflow);
    }
}
