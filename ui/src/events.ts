// A session's event log, followed live over `/v1/sessions/{id}/events/ws`.
//
// The stream keeps the `seq` of the last event it delivered and reconnects
// from it (`?since=`) after a network drop or a daemon restart, with backoff.
// The daemon's log has no gaps and the cursor is exclusive, so listeners see
// every event once, in order; an event whose seq is not the next one is
// dropped (a repeat) or makes the stream resubscribe (a gap), never shown.

import { type SessionEvent, wsUrl } from "./api";

export type Listener = (e: SessionEvent, live: boolean) => void;
export type Status = "connecting" | "live" | "reconnecting" | "closed";

export class EventStream {
  private ws: WebSocket | null = null;
  private last = 0;
  private listeners: Listener[] = [];
  private statusListeners: ((s: Status) => void)[] = [];
  private retry = 0;
  private timer: number | undefined;
  private stopped = false;
  /** Events at or below this seq were in the log when the page opened. */
  private replayUntil: number;
  status: Status = "connecting";

  constructor(
    readonly session: string,
    replayUntil = 0,
  ) {
    this.replayUntil = replayUntil;
  }

  /** The seq of the last event delivered. */
  get cursor(): number {
    return this.last;
  }

  on(f: Listener): void {
    this.listeners.push(f);
  }

  onStatus(f: (s: Status) => void): void {
    this.statusListeners.push(f);
    f(this.status);
  }

  start(): void {
    this.connect();
  }

  close(): void {
    this.stopped = true;
    window.clearTimeout(this.timer);
    this.ws?.close();
    this.setStatus("closed");
  }

  private setStatus(s: Status): void {
    this.status = s;
    for (const f of this.statusListeners) f(s);
  }

  private connect(): void {
    if (this.stopped) return;
    const ws = new WebSocket(wsUrl(`/v1/sessions/${encodeURIComponent(this.session)}/events/ws?since=${this.last}`));
    this.ws = ws;
    ws.onopen = () => {
      this.retry = 0;
      this.setStatus("live");
    };
    ws.onmessage = (m) => {
      let e: SessionEvent;
      try {
        e = JSON.parse(m.data as string) as SessionEvent;
      } catch {
        return;
      }
      if (e.seq <= this.last) return; // already delivered
      if (e.seq !== this.last + 1) {
        // A gap: start again from the cursor rather than show events out of order.
        ws.close();
        return;
      }
      this.last = e.seq;
      const live = e.seq > this.replayUntil;
      for (const f of this.listeners) {
        try {
          f(e, live);
        } catch (err) {
          console.warn("event listener failed", err);
        }
      }
    };
    ws.onclose = () => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      this.setStatus("reconnecting");
      const delay = Math.min(5000, 250 * 2 ** this.retry++);
      this.timer = window.setTimeout(() => this.connect(), delay);
    };
  }
}
