// The API calls of the Files tab beyond read, write and list (which are in
// `api.ts`): mkdir, rename, remove, upload, search, changes, and the URLs
// of downloads.

import { json, request } from "./api";
import type { Changes, SearchResult } from "./wire";

/** `GET …/files/stat`. */
export interface FileStat {
  kind: "file" | "dir" | "symlink" | "other";
  size: number;
  mode: number;
  mtime: number;
}

const enc = encodeURIComponent;
const s = (id: string) => `/v1/sessions/${enc(id)}`;

export const filesApi = {
  stat: (id: string, path: string) => json<FileStat>("GET", `${s(id)}/files/stat?path=${enc(path)}`),
  mkdir: (id: string, path: string, parents = false) => request("POST", `${s(id)}/files/mkdir`, JSON.stringify({ path, parents })).then(() => undefined),
  rename: (id: string, from: string, to: string) => request("POST", `${s(id)}/files/rename`, JSON.stringify({ from, to })).then(() => undefined),
  remove: (id: string, path: string, recursive: boolean) =>
    request("DELETE", `${s(id)}/files?path=${enc(path)}&recursive=${recursive}`).then(() => undefined),
  /** Writes bytes (an upload); the parent folder must exist. */
  upload: (id: string, path: string, data: Blob) => request("PUT", `${s(id)}/files?path=${enc(path)}`, data, false).then(() => undefined),
  search: (id: string, path: string, q: string) => json<SearchResult>("GET", `${s(id)}/files/search?path=${enc(path)}&q=${enc(q)}`),
  /** The changes since the session's start or its last checkpoint (the daemon's default). */
  changes: (id: string, path: string, since?: "start" | "checkpoint") =>
    json<Changes>("GET", `${s(id)}/changes?path=${enc(path)}${since ? `&since=${since}` : ""}`),
  /** A file's bytes, as a download. */
  fileUrl: (id: string, path: string) => `${s(id)}/files?path=${enc(path)}`,
  /** A folder as a tar archive, as a download. */
  archiveUrl: (id: string, path: string) => `${s(id)}/files/archive?path=${enc(path)}`,
};
