// The one EventSource of the page. The browser reconnects by itself and resends Last-Event-ID, so the server
// replays what was missed. We step in twice: when the browser gives up (an HTTP error closes an EventSource
// for good), and when no event with an id has arrived yet (the browser would then reconnect without
// Last-Event-ID and get a snapshot instead of the events in between). Then we reopen with ?lastEventId= set
// to the position the `connected` event told us.

const MAX_BACKOFF_MS = 15_000;

export class Live {
  /**
   * handlers: status(state), connected(data, resumed), snapshot(data), reset(data), event(envelope),
   * refused() (the server answered the stream with an HTTP error, e.g. 401 once a session expired).
   * state is one of "connecting", "live", "reconnecting".
   */
  constructor(url, handlers) {
    this.url = url;
    this.handlers = handlers;
    this.source = null;
    this.lastEventId = null;
    this.browserHasId = false; // the EventSource itself has seen an id, so its own reconnect resumes
    this.backoff = 1000;
    this.timer = null;
    this.everConnected = false;
  }

  open() {
    this.close();
    const url = this.lastEventId ? `${this.url}?lastEventId=${encodeURIComponent(this.lastEventId)}` : this.url;
    const source = new EventSource(url, { withCredentials: true });
    this.source = source;
    this.browserHasId = false;
    this.status(this.everConnected ? "reconnecting" : "connecting");

    source.addEventListener("connected", (e) => {
      const data = parse(e);
      // A fresh stream starts with a snapshot as of `sequence`: resuming later must start from there.
      if (data?.resuming_after == null && data?.sequence != null) this.lastEventId = String(data.sequence);
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
      if (e.lastEventId) {
        this.lastEventId = e.lastEventId;
        this.browserHasId = true;
      }
      const envelope = parse(e);
      if (envelope) this.handlers.event?.(envelope);
    });
    source.addEventListener("error", () => {
      if (source !== this.source) return;
      this.status("reconnecting");
      if (source.readyState === EventSource.CLOSED) this.handlers.refused?.();
      if (source.readyState === EventSource.CLOSED || (!this.browserHasId && this.lastEventId)) {
        source.close();
        this.retryLater();
      }
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
