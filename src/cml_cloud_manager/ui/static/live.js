// The one EventSource of the page. The browser reconnects by itself and resends Last-Event-ID, so the server
// replays what was missed; we only step in when the browser gives up (an HTTP error closes an EventSource for
// good), reopening with ?lastEventId= so the replay still happens.

const MAX_BACKOFF_MS = 30_000;

export class Live {
  /**
   * handlers: status(state), connected(data, resumed), snapshot(data), reset(data), event(envelope).
   * state is one of "connecting", "live", "reconnecting".
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.source = null;
    this.lastEventId = null;
    this.backoff = 1000;
    this.timer = null;
    this.everConnected = false;
  }

  open() {
    this.close();
    const url = this.lastEventId ? `${this.url}?lastEventId=${encodeURIComponent(this.lastEventId)}` : this.url;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    this.status(this.everConnected ? "reconnecting" : "connecting");

    source.addEventListener("connected", (e) => {
      const data = parse(e);
      const resumed = this.everConnected;
      this.everConnected = true;
      this.backoff = 1000;
      this.status("live");
      this.handlers.connected?.(data, resumed);
    });
    source.addEventListener("snapshot", (e) => this.handlers.snapshot?.(parse(e)));
    source.addEventListener("reset", (e) => this.handlers.reset?.(parse(e)));
    source.addEventListener("shutdown", () => this.status("reconnecting"));
    source.addEventListener("message", (e) => {
      if (e.lastEventId) this.lastEventId = e.lastEventId;
      const envelope = parse(e);
      if (envelope) this.handlers.event?.(envelope);
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      this.status("reconnecting");
      if (source.readyState === EventSource.CLOSED) this.retryLater();
    });
  }

  retryLater() {
    clearTimeout(this.timer);
    const wait = this.backoff * (0.75 + Math.random() / 2); // jitter: a restarted API is not hit by all at once
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.timer = setTimeout(() => this.open(), wait);
  }

  status(value) {
    this.handlers.status?.(value);
  }

  close() {
    clearTimeout(this.timer);
    this.source?.close();
    this.source = null;
  }
}

function parse(event) {
  try {
    return JSON.parse(event.data);
  } catch {
    console.warn("unparseable SSE data", event.data);
    return null;
  }
}
