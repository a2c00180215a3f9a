// The daemon's HTTP API (docs/api/openapi.yaml), as the UI uses it. The
// browser carries the API token as the HttpOnly cookie the login URL set.
// Its types are in `wire.ts`, generated from the `firepit-wire` crate.

import type {
  AgentSent,
  AgentStatus,
  AgentStopped,
  Checkpoint,
  CreateSession,
  DirEntry,
  ErrorBody,
  Event,
  HostInfo,
  Image,
  Port,
  ServiceInfo,
  Session,
  Share,
  UpdateSession,
  Usage,
  UsageList,
} from "./wire";

export type * from "./wire";

/** One event of a session's log: `seq`, `session`, `time_ms`, `type` and its fields. */
export type SessionEvent = Event;

/** An error the API answered with, or a network failure (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Called when the API says the browser is not signed in. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

export async function request(method: string, path: string, body?: BodyInit, json = true): Promise<Response> {
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      body,
      credentials: "same-origin",
      headers: body !== undefined && json ? { "content-type": "application/json" } : {},
    });
  } catch (e) {
    throw new ApiError(0, "network", `firepit did not answer (${(e as Error).message}). Is the daemon running?`);
  }
  if (!resp.ok) {
    let code = "http_" + resp.status;
    let message = `${method} ${path} answered ${resp.status}`;
    try {
      const b = (await resp.json()) as Partial<ErrorBody> | null;
      if (b?.error) {
        code = b.error.code;
        message = b.error.message;
      }
    } catch {
      // not a JSON error body
    }
    if (resp.status === 401) onUnauthorized();
    throw new ApiError(resp.status, code, message);
  }
  return resp;
}

export async function json<T>(method: string, path: string, body?: unknown): Promise<T> {
  const resp = await request(method, path, body === undefined ? undefined : JSON.stringify(body));
  return (await resp.json()) as T;
}

const enc = encodeURIComponent;
const s = (id: string) => `/v1/sessions/${enc(id)}`;

/** The most sessions one `GET /v1/usage` reads (the daemon refuses more). */
export const MAX_USAGE_IDS = 100;

export const api = {
  sessions: () => json<Session[]>("GET", "/v1/sessions"),
  session: (id: string) => json<Session>("GET", s(id)),
  images: () => json<Image[]>("GET", "/v1/images"),
  create: (body: CreateSession) => json<Session>("POST", "/v1/sessions", body),
  stop: (id: string) => json<Session>("POST", `${s(id)}/stop`),
  start: (id: string) => json<Session>("POST", `${s(id)}/start`),
  destroy: (id: string) => request("DELETE", s(id)).then(() => undefined),
  ports: (id: string) => json<Port[]>("GET", `${s(id)}/ports`),
  share: (id: string, port: number, ttl_seconds?: number, path?: string) =>
    json<Share>("POST", `${s(id)}/shares`, { port, ttl_seconds: ttl_seconds ?? null, ...(path ? { path } : {}) }),
  shares: (id: string) => json<Share[]>("GET", `${s(id)}/shares`),
  revokeShare: (id: string, share: string) => request("DELETE", `${s(id)}/shares/${enc(share)}`).then(() => undefined),
  update: (id: string, body: UpdateSession) => json<Session>("PATCH", s(id), body),
  usage: (id: string) => json<Usage>("GET", `${s(id)}/usage`),
  /** Several sessions' usage in one request (at most `MAX_USAGE_IDS` ids). */
  usageList: (ids: string[]) => json<UsageList>("GET", `/v1/usage?ids=${ids.map(enc).join(",")}`),
  host: () => json<HostInfo>("GET", "/v1/host"),
  services: (id: string) => json<ServiceInfo[]>("GET", `${s(id)}/services`),
  /** A service's log as a stream of NDJSON lines (`follow` keeps it open). */
  serviceLogs: (id: string, name: string, signal: AbortSignal) =>
    fetch(`${s(id)}/services/${enc(name)}/logs?follow=true&tail=500`, { credentials: "same-origin", signal }),
  list: (id: string, path: string) => json<DirEntry[]>("GET", `${s(id)}/files/list?path=${enc(path)}`),
  read: (id: string, path: string) => request("GET", `${s(id)}/files?path=${enc(path)}`).then((r) => r.arrayBuffer()),
  write: (id: string, path: string, data: string) =>
    request("PUT", `${s(id)}/files?path=${enc(path)}`, data, false).then(() => undefined),
  agent: (id: string) => json<AgentStatus>("GET", `${s(id)}/agent`),
  send: (id: string, message: string) => json<AgentSent>("POST", `${s(id)}/agent`, { message }),
  stopAgent: (id: string) => json<AgentStopped>("POST", `${s(id)}/agent/stop`),
  checkpoints: (id: string) => json<Checkpoint[]>("GET", `${s(id)}/checkpoints`),
  restore: (id: string, checkpoint: string) => json<Session>("POST", `${s(id)}/checkpoints/${enc(checkpoint)}/restore`),
};

/** `ws://host/path` for a path of this daemon. */
export function wsUrl(path: string): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${path}`;
}
