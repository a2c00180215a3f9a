// Generated from the `firepit-wire` crate by its test `ts::tests::wire_ts_is_up_to_date`;
// do not edit. `cargo xtask ui` rewrites it (and rebuilds the UI) after a wire type changes.

/**
 * The lifecycle state of a session's machine.
 */
export type SessionState = "creating" | "running" | "stopped" | "failed";

/**
 * Whether a machine reaches the outside world.
 */
export type NetworkMode = "nat" | "none";

/**
 * Resource limits of a machine. Absent fields take the daemon's defaults.
 */
export type Limits = {
/**
 * Memory limit in bytes.
 */
memory_bytes?: number | null,
/**
 * CPU limit in CPUs (fractions allowed).
 */
cpus?: number | null,
/**
 * Limit on the number of processes and threads.
 */
pids?: number | null,
/**
 * Disk limit in bytes: the most the machine's own files (all it writes
 * over its image) may take; writing past it fails inside with "disk
 * quota exceeded". Absent on a session made before disk limits: none.
 */
disk_bytes?: number | null, };

/**
 * `POST /v1/sessions`
 */
export type CreateSession = {
/**
 * Image name; the daemon's default image when absent.
 */
image?: string | null,
/**
 * Resource limits.
 */
limits: Limits,
/**
 * Network mode.
 */
network: NetworkMode,
/**
 * A forge repository (`owner/name`) to clone into `/workspace`; the
 * machine reaches it (and only it) through the daemon's forge broker.
 */
repo?: string | null,
/**
 * The branch to check out (the repository's default if absent).
 */
branch?: string | null,
/**
 * Stop the session this many seconds after it starts (its files are
 * kept; `start` runs it again, without a timeout).
 */
timeout_secs?: number | null,
/**
 * A name a person gives the session (1 to 64 characters, no control
 * characters); several sessions may share one.
 */
name?: string | null,
/**
 * Labels: `key: value` pairs to find sessions by (`GET
 * /v1/sessions?label=key=value`). Keys are 1 to 63 of `[a-z0-9._-]`
 * starting with a letter or digit; values at most 128 characters, no
 * control characters; at most 32 labels.
 */
labels?: { [key in string]: string }, };

/**
 * A session: a machine and what the daemon knows of it.
 */
export type Session = {
/**
 * Short id, also the machine's hostname and part of its preview URLs.
 */
id: string,
/**
 * Image the machine was made from.
 */
image: string,
/**
 * Lifecycle state.
 */
state: SessionState,
/**
 * Limits in force (defaults filled in).
 */
limits: Limits,
/**
 * Network mode.
 */
network: NetworkMode,
/**
 * Unix time of creation, in seconds.
 */
created_at: number,
/**
 * What went wrong, when `state` is `failed`.
 */
error?: string | null,
/**
 * Unix time, in seconds, at which the daemon stops the session (its
 * timeout); absent when it has none.
 */
stop_at?: number | null,
/**
 * The name a person gave it, if any.
 */
name?: string | null,
/**
 * Its labels.
 */
labels?: { [key in string]: string }, };

/**
 * `PATCH /v1/sessions/{id}`: what changes; absent fields stay as they are.
 */
export type UpdateSession = {
/**
 * The new name; an empty string takes the name away.
 */
name?: string | null,
/**
 * The new labels, all of them (they replace the old ones).
 */
labels?: { [key in string]: string } | null, };

/**
 * `GET /v1/sessions/{id}/usage`: what a session's machine uses now, read
 * when asked (nothing samples an idle session nobody looks at).
 */
export type Usage = {
/**
 * Whether the machine runs (a stopped one has no CPU nor memory figures).
 */
running: boolean,
/**
 * When the figures were read, Unix milliseconds.
 */
time_ms: number,
/**
 * CPU time the machine's processes used since it started, microseconds:
 * two readings give the CPU share between them.
 */
cpu_usec?: number | null,
/**
 * Memory in use now, bytes (the cgroup's count: page cache included).
 */
memory_bytes?: number | null,
/**
 * Processes and threads now.
 */
pids?: number | null,
/**
 * What the machine's own files take, bytes (its writable layer), where
 * the daemon can tell (a machine in the disk pool).
 */
disk_bytes?: number | null, };

/**
 * `GET /v1/usage?ids=a,b,c`: several sessions' usage in one request (a
 * list of sessions reads them all at once, not one request each).
 */
export type UsageList = {
/**
 * By session id: the usage of each session asked for that could be read.
 */
usage: { [key in string]: Usage },
/**
 * The ids asked for that name no session (destroyed since they were
 * listed, say).
 */
unknown?: Array<string>,
/**
 * By session id: why a session's usage could not be read (its machine
 * going away as it was read, say); such a session is not in `usage`.
 */
errors?: { [key in string]: string }, };

/**
 * `GET /v1/host`: what the host has, for clients that choose limits.
 */
export type HostInfo = {
/**
 * The host's memory, bytes: no session may have a larger memory limit.
 */
memory_bytes: number,
/**
 * Memory available now, bytes.
 */
memory_available_bytes: number,
/**
 * CPUs the daemon may use: a larger CPU limit means all of them.
 */
cpus: number,
/**
 * Whether sessions get disk limits (the daemon has a disk pool).
 */
disk_limits: boolean,
/**
 * The image a session gets when it names none.
 */
default_image: string,
/**
 * The limits a session gets where it gives none.
 */
default_limits: Limits,
/**
 * Whether a forge is configured (sessions may then clone a `repo`).
 */
forge: boolean, };

/**
 * An image the daemon can make machines from.
 */
export type Image = {
/**
 * Name, e.g. `default`.
 */
name: string,
/**
 * Size on disk in bytes.
 */
size_bytes: number,
/**
 * Unix time it was built.
 */
created_at: number,
/**
 * Where it came from.
 */
source: ImageSource, };

/**
 * Where an image came from.
 */
export type ImageSource = {
/**
 * `recipe` (built from Debian packages), `registry` (pulled), `archive` (imported),
 * `dockerfile` (built) or `saved` (from a session).
 */
kind: string,
/**
 * The recipe, the registry reference, the archive's or Dockerfile's path, or the
 * session it was saved from.
 */
from: string,
/**
 * The OCI manifest's digest (pulled, imported and built images).
 */
digest: string | null, };

/**
 * `GET /v1/sessions/{id}/ports`: a TCP port listening inside the machine.
 */
export type Port = {
/**
 * The port.
 */
port: number,
/**
 * The address it listens on inside the machine (`0.0.0.0`, `127.0.0.1`, `::` …).
 */
addr: string,
/**
 * Its preview URL, `http://<port>-<session>.<domain>:<daemon port>/`.
 */
url: string, };

/**
 * `POST /v1/sessions/{id}/shares`: a share link for one preview port.
 */
export type CreateShare = {
/**
 * The port inside the machine.
 */
port: number,
/**
 * How long the link works, in seconds (default one hour, at most 30 days).
 */
ttl_seconds: number | null,
/**
 * Where the link lands in the app: a local path (`/`, the default,
 * `/docs?x=1`); the link opens the whole port whatever it says.
 */
path?: string | null, };

/**
 * A share link of a preview port.
 */
export type Share = {
/**
 * The share's id (for revoking it).
 */
id: string,
/**
 * The session it opens.
 */
session: string,
/**
 * The port it opens.
 */
port: number,
/**
 * The link: `http://<port>-<session>.<domain>:<port>/__firepit/share?token=…`.
 */
url: string,
/**
 * Unix seconds it was made.
 */
created_at: number,
/**
 * Unix seconds after which it no longer works.
 */
expires_at: number,
/**
 * Whether it was revoked.
 */
revoked: boolean,
/**
 * Where the link lands in the app.
 */
path: string, };

/**
 * An error body: `{"error": {"code": "...", "message": "..."}}`.
 */
export type ErrorBody = {
/**
 * The error.
 */
error: ApiError, };

/**
 * A stable error code and a message a person can act on.
 */
export type ApiError = {
/**
 * Stable machine-readable code, e.g. `session_not_found`.
 */
code: string,
/**
 * What went wrong and what to do about it.
 */
message: string, };

/**
 * What to run: a program with arguments, or a shell line for `/bin/sh -c`.
 */
export type Command = { "argv": Array<string> } | { "shell": string };

/**
 * How a process ended.
 */
export type ExitStatus = {
/**
 * The exit code, if it exited.
 */
code: number | null,
/**
 * The signal that killed it, if one did.
 */
signal: number | null,
/**
 * Whether the guest killed it because its timeout passed.
 */
timed_out: boolean, };

/**
 * One line of the NDJSON stream answering an exec.
 */
export type ExecEvent = { "type": "stdout",
/**
 * The bytes, base64.
 */
data: string, } | { "type": "stderr",
/**
 * The bytes, base64.
 */
data: string, } | { "type": "exit",
/**
 * How it ended.
 */
status: ExitStatus, } | { "type": "error",
/**
 * What went wrong.
 */
error: ApiError, };

/**
 * Where a service is in its life.
 */
export type ServiceState = "running" | "backoff" | "exited" | "stopped";

/**
 * When a service is restarted after it exits.
 */
export type RestartPolicy = "never" | "on_failure" | "always";

/**
 * A named background process. Unknown fields are refused: it is also the
 * body of `POST /v1/sessions/{id}/services`.
 */
export type ServiceSpec = {
/**
 * Unique name.
 */
name: string,
/**
 * What to run.
 */
command: Command,
/**
 * Added to the environment.
 */
env: Array<[string, string]>,
/**
 * Working directory.
 */
cwd: string | null,
/**
 * When to restart.
 */
restart: RestartPolicy, };

/**
 * A service as listed.
 */
export type ServiceInfo = {
/**
 * Name.
 */
name: string,
/**
 * State.
 */
state: ServiceState,
/**
 * Pid of the current process.
 */
pid: number | null,
/**
 * How often it was restarted.
 */
restarts: number,
/**
 * How its last process ended.
 */
last_exit: ExitStatus | null,
/**
 * The spec it runs.
 */
spec: ServiceSpec, };

/**
 * One chunk of a service's log, as an NDJSON line.
 */
export type LogLine = {
/**
 * `stdout` or `stderr`.
 */
stream: string,
/**
 * The text (invalid UTF-8 replaced).
 */
text: string, };

/**
 * What a directory entry is.
 */
export type FileKind = "file" | "dir" | "symlink" | "other";

/**
 * One entry of a directory listing.
 */
export type DirEntry = {
/**
 * File name (not the path).
 */
name: string,
/**
 * The kind.
 */
kind: FileKind,
/**
 * Size in bytes.
 */
size: number,
/**
 * Permission bits.
 */
mode: number,
/**
 * Modification time, seconds since the epoch.
 */
mtime: number, };

/**
 * `GET /v1/sessions/{id}/files/search`: lines that hold the text.
 */
export type SearchResult = {
/**
 * What searched: `rg` (ripgrep: skips hidden files and what `.gitignore`
 * ignores) or `grep` (ripgrep is not in the machine: every file but
 * `.git` and `node_modules`).
 */
tool: string,
/**
 * The matching lines, in the tool's order.
 */
matches: Array<SearchMatch>,
/**
 * More matched than `matches` holds.
 */
truncated: boolean,
/**
 * What the tool said on its standard error, if anything (cut short).
 */
note?: string | null, };

/**
 * One matching line of a [`SearchResult`].
 */
export type SearchMatch = {
/**
 * The file, an absolute path in the machine.
 */
path: string,
/**
 * The line number, from 1.
 */
line: number,
/**
 * The line (cut at 500 characters).
 */
text: string, };

/**
 * `GET /v1/sessions/{id}/changes`: what differs from the baseline (the
 * session's start, or its last checkpoint; `since` picks).
 */
export type Changes = {
/**
 * What the files are compared with: `start`, the session's files when
 * it was made; `checkpoint`, its files just before its last
 * checkpoint (`checkpoint` names it); `git`, no baseline was recorded
 * (or the folder is outside what it covers), so this is what differs
 * from the folder's git repository's `HEAD`; `none`, none of these
 * (`note` says why). New files git does not ignore are included.
 */
baseline: string,
/**
 * The checkpoint's name (or id) a `checkpoint` baseline was taken for.
 */
checkpoint?: string | null,
/**
 * The baselines the session has, that the query's `since` picks
 * from: `start` (kept for good) and `checkpoint` (its last one's, once
 * there is one). Empty with `git` and `none`.
 */
baselines?: Array<string>,
/**
 * Unix time (seconds) the `start` or `checkpoint` baseline was taken.
 */
taken_at?: number | null,
/**
 * The folder compared: the asked one, or its git repository's top
 * when it is in one (`files`' paths are relative to it).
 */
root?: string | null,
/**
 * The commit compared with (with `git`; absent before the first commit).
 */
head?: string | null,
/**
 * Per file, its diff.
 */
files: Array<FileChange>,
/**
 * The diff was cut short (too large, or too many new files).
 */
truncated: boolean,
/**
 * Why there is no baseline, or what was left out.
 */
note?: string | null, };

/**
 * One file of [`Changes`].
 */
export type FileChange = {
/**
 * The file's path relative to the answer's `root`.
 */
path: string,
/**
 * `added`, `deleted`, `modified` or `renamed`.
 */
status: string,
/**
 * Its unified diff (`diff --git …` on).
 */
diff: string, };

/**
 * A control message sent as a text frame on a PTY WebSocket (binary frames carry
 * raw terminal bytes both ways).
 */
export type PtyControl = { "type": "resize",
/**
 * Columns.
 */
cols: number,
/**
 * Rows.
 */
rows: number, } | { "type": "exit",
/**
 * How it ended.
 */
status: ExitStatus, };

/**
 * `POST /v1/sessions/{id}/agent`
 */
export type AgentMessage = {
/**
 * What the person says. Sent while a run goes on, it reaches the agent at
 * its next step.
 */
message: string, };

/**
 * The answer to an [`AgentMessage`].
 */
export type AgentSent = {
/**
 * `started` (a new run) or `interjected` (delivered to the running one).
 */
status: string, };

/**
 * The answer to `POST /v1/sessions/{id}/agent/stop`.
 */
export type AgentStopped = {
/**
 * Whether a run was going on and was stopped.
 */
stopped: boolean, };

/**
 * `GET /v1/sessions/{id}/agent`
 */
export type AgentStatus = {
/**
 * Whether a model is configured.
 */
configured: boolean,
/**
 * The provider (`anthropic`, `openai`, …).
 */
provider?: string | null,
/**
 * The model.
 */
model?: string | null,
/**
 * Whether a run is going on.
 */
running: boolean,
/**
 * Input tokens of the session so far.
 */
input_tokens: number,
/**
 * Output tokens of the session so far.
 */
output_tokens: number,
/**
 * Cost of the session so far in USD, when the model's price is known.
 */
cost_usd?: number | null,
/**
 * How to configure a model, when none is.
 */
help?: string | null,
/**
 * The seq of the session's newest event: follow the log from here to see
 * only what a message sent now brings.
 */
last_seq: number, };

/**
 * `GET`/`PUT /v1/sessions/{id}/closed-loop`: what the session does with the
 * problems it recognises.
 */
export type ClosedLoopSettings = {
/**
 * Whether a new problem wakes the idle agent (default true; only once
 * the agent has been talked to in the session). A running agent gets new
 * problems of the session's services at its next step either way.
 */
wake_agent: boolean,
/**
 * Whether the preview puts its error-reporting script into the app's
 * HTML pages (default true): their uncaught exceptions and failed
 * requests become problems with `source=preview`. Off, pages reach the
 * browser byte for byte as the app sent them.
 */
preview_reports: boolean, };

/**
 * `PUT /v1/sessions/{id}/closed-loop`: the settings to change (those left
 * out stay as they are).
 */
export type ClosedLoopChange = {
/**
 * See [`ClosedLoopSettings::wake_agent`].
 */
wake_agent?: boolean | null,
/**
 * See [`ClosedLoopSettings::preview_reports`].
 */
preview_reports?: boolean | null, };

/**
 * `POST /v1/sessions/{id}/checkpoints`
 */
export type CreateCheckpoint = {
/**
 * A name for people (at most 200 characters, no control characters).
 */
name?: string | null, };

/**
 * A checkpoint: the session's files as they were at one moment.
 */
export type Checkpoint = {
/**
 * Its id (`cp-…`), unique in the session.
 */
id: string,
/**
 * The session it is of.
 */
session: string,
/**
 * Its name, if it has one.
 */
name?: string | null,
/**
 * When it was made, unix milliseconds.
 */
created_at_ms: number,
/**
 * Bytes its files hold above the image.
 */
size_bytes: number,
/**
 * What made it: `user` (the API or CLI) or `agent` (before a step that
 * can change files).
 */
made_by: string,
/**
 * The checkpoint the session's files came from when it was made (the
 * last one made or restored before it): checkpoints form a tree.
 */
parent?: string | null,
/**
 * Whether the machine was running (its processes frozen for the moment).
 */
running: boolean, };

/**
 * `POST /v1/sessions/{id}/fork`
 */
export type ForkSession = {
/**
 * The checkpoint to start from; absent: the session's files now.
 */
from?: string | null, };

/**
 * `POST /v1/sessions/{id}/image`: an image made of the session's files.
 */
export type SaveImage = {
/**
 * The new image's name (an image of that name must not exist).
 */
name: string,
/**
 * The checkpoint to make it of; absent: the session's files now.
 */
from?: string | null, };

/**
 * A tool call as the model made it.
 */
export type ToolCall = {
/**
 * The provider's id for the call.
 */
id: string,
/**
 * The tool's name.
 */
name: string,
/**
 * The arguments as the model sent them: JSON text, possibly malformed.
 */
arguments: string, };

/**
 * One entry of the transcript. Serialised with a `type` tag, snake_case.
 */
export type TranscriptItem = { "type": "run_started",
/**
 * The provider's name.
 */
provider: string,
/**
 * The model.
 */
model: string, } | { "type": "user_message",
/**
 * The text.
 */
text: string,
/**
 * Delivered in the middle of a run.
 */
interjection: boolean, } | { "type": "assistant_delta",
/**
 * The new text.
 */
text: string, } | { "type": "assistant_message",
/**
 * Its text.
 */
text: string,
/**
 * The tool calls it made.
 */
tool_calls: Array<ToolCall>, } | { "type": "tool_started",
/**
 * The call's id.
 */
id: string,
/**
 * The tool.
 */
name: string, } | { "type": "tool_result",
/**
 * The call's id.
 */
id: string,
/**
 * The tool.
 */
name: string,
/**
 * The output.
 */
output: string,
/**
 * Whether it failed.
 */
is_error: boolean, } | { "type": "compacted",
/**
 * Messages dropped from the start of the history.
 */
dropped: number,
/**
 * The note that replaces them.
 */
note: string, } | { "type": "usage",
/**
 * Input tokens of the request.
 */
input_tokens: number,
/**
 * Output tokens of the request.
 */
output_tokens: number,
/**
 * Its cost in USD, when the model's price is known.
 */
cost_usd?: number | null,
/**
 * Input tokens of the session so far.
 */
total_input_tokens: number,
/**
 * Output tokens of the session so far.
 */
total_output_tokens: number,
/**
 * Cost of the session so far, when known.
 */
total_cost_usd?: number | null, } | { "type": "error",
/**
 * What, for the person.
 */
message: string, } | { "type": "run_finished",
/**
 * Why: `done` (the model stopped), `asked_user`, `error`, `max_steps`.
 */
reason: string, } | { "type": "run_stopped" } | { "type": "checkpoint",
/**
 * The checkpoint's id.
 */
checkpoint: string,
/**
 * The ids of the calls it was made before.
 */
tool_call_ids: Array<string>, };

/**
 * One event of a session's log.
 */
export type Event = {
/**
 * Position in the session's log, from 1, without gaps.
 */
seq: number,
/**
 * The session.
 */
session: string,
/**
 * When it was appended, unix milliseconds.
 */
time_ms: number, } & ({ "type": "session_state",
/**
 * The new state.
 */
state: SessionState,
/**
 * Why, when it failed.
 */
error?: string | null, } | { "type": "port_opened",
/**
 * Port number.
 */
port: number,
/**
 * Address it listens on inside the machine.
 */
addr: string,
/**
 * Its preview URL.
 */
url: string, } | { "type": "port_closed",
/**
 * Port number.
 */
port: number,
/**
 * Address it listened on.
 */
addr: string, } | { "type": "service_started",
/**
 * Service name.
 */
name: string,
/**
 * Pid of its process inside the machine.
 */
pid?: number | null, } | { "type": "service_exited",
/**
 * Service name.
 */
name: string,
/**
 * How it ended.
 */
status: ExitStatus, } | { "type": "share_created",
/**
 * The share's id (for revoking it).
 */
id: string,
/**
 * Port it opens.
 */
port: number,
/**
 * Unix seconds after which it no longer works.
 */
expires_at: number, } | { "type": "share_revoked",
/**
 * The share's id.
 */
id: string, } | { "type": "agent",
/**
 * The item.
 */
item: TranscriptItem, } | { "type": "note",
/**
 * The text.
 */
text: string, } | { "type": "problem",
/**
 * `service:<name>`, `browser` or `test`.
 */
source: string,
/**
 * What it is (`python_exception`, `js_exception`, `http_5xx`, …).
 */
kind: string,
/**
 * One line.
 */
summary: string,
/**
 * The trace and its context (at most 4 KiB).
 */
detail: string,
/**
 * How often it was seen so far.
 */
count: number, } | { "type": "artifact",
/**
 * Its name.
 */
name: string,
/**
 * Its content type.
 */
content_type: string,
/**
 * Its size.
 */
bytes: number, } | { "type": "test_run",
/**
 * The command.
 */
command: string,
/**
 * Whether they passed.
 */
ok: boolean,
/**
 * Tests passed, when the runner said.
 */
passed?: number | null,
/**
 * Tests failed.
 */
failed: number,
/**
 * The failing tests' names (at most 50).
 */
failures: Array<string>,
/**
 * The exit code (none: killed at the time limit).
 */
exit_code?: number | null,
/**
 * How long it took.
 */
duration_ms: number,
/**
 * One line: `3 passed, 1 failed`.
 */
summary: string, } | { "type": "checkpoint_made",
/**
 * Its id.
 */
checkpoint: string,
/**
 * Its name, if any.
 */
name?: string | null,
/**
 * What made it (`user`, `agent`).
 */
made_by: string,
/**
 * Bytes its files hold above the image.
 */
size_bytes: number, } | { "type": "checkpoint_removed",
/**
 * Its id.
 */
checkpoint: string, } | { "type": "restored",
/**
 * The checkpoint.
 */
checkpoint: string,
/**
 * The services started again with their specs.
 */
services: Array<string>, } | { "type": "forked",
/**
 * The session forked from.
 */
parent: string,
/**
 * The new session.
 */
child: string,
/**
 * The checkpoint it started from; absent: the parent's files then.
 */
checkpoint?: string | null, } | { "type": "closed_loop",
/**
 * Whether a recognised problem wakes the idle agent.
 */
wake_agent: boolean,
/**
 * Whether the preview's pages report their errors (absent in
 * events older than the setting: on).
 */
preview_reports: boolean, } | { "type": "files_changed",
/**
 * The directories, sorted (at most 64).
 */
dirs: Array<string>,
/**
 * More changed than `dirs` names: anything under the watched
 * directory may have changed.
 */
overflow: boolean, });
