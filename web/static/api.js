// The HTTP API as the page uses it: JSON reads with the read token, and /events read with fetch() so that the
// token goes in a header (EventSource cannot send one, and a token in a URL ends up in logs).

const TOKEN_KEY = "alert-history.read-token";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let asking = null;

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

// Asks for the token once, however many reads were refused meanwhile.
export function askToken(why) {
  if (asking) return asking;
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-why").textContent = why || "";
  input.value = "";
  asking = new Promise((resolve) => {
    dialog.addEventListener(
      "close",
      () => {
        const value = input.value.trim();
        if (value) sessionStorage.setItem(TOKEN_KEY, value);
        asking = null;
        document.getElementById("token-button").hidden = false;
        resolve(value);
      },
      { once: true },
    );
  });
  dialog.showModal();
  input.focus();
  return asking;
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(name, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

// GET a JSON read; a 401 asks for the token and tries again; any other error is an ApiError with the server's text.
export async function getJSON(path, params = {}, { signal } = {}) {
  for (;;) {
    const resp = await fetch(path + query(params), { headers: headers(), signal });
    if (resp.status === 401) {
      const body = await resp.json().catch(() => ({}));
      await askToken(body.error);
      continue;
    }
    if (!resp.ok) {
      const body = await resp.json().catch(() => ({}));
      throw new ApiError(resp.status, body.error || `${path}: HTTP ${resp.status}`);
    }
    return resp.json();
  }
}

// A Server-Sent Events stream of /events: parses frames, remembers the cursor (the SSE id) and reconnects with it
// as Last-Event-ID, so a dropped connection loses nothing. onStatus(state, detail): connecting | live | retrying |
// error (a 400: the filter is wrong; no retry).
export class LiveStream {
  constructor(filter, { onEvent, onStatus, onOpen }) {
    this.filter = filter;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.onOpen = onOpen;
    this.cursor = null;
    this.retryMs = 2000;
    this.controller = new AbortController();
    this.stopped = false;
  }

  start() {
    this.loop();
    return this;
  }

  stop() {
    this.stopped = true;
    this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      let wait = this.retryMs;
      try {
        this.onStatus("connecting");
        const extra = { Accept: "text/event-stream" };
        if (this.cursor) extra["Last-Event-ID"] = this.cursor;
        const params = this.filter ? { filter: this.filter } : {};
        const resp = await fetch(`/events${query(params)}`, {
          headers: headers(extra),
          signal: this.controller.signal,
          cache: "no-store",
        });
        if (resp.status === 401) {
          const body = await resp.json().catch(() => ({}));
          await askToken(body.error);
          continue;
        }
        if (resp.status === 400) {
          const body = await resp.json().catch(() => ({}));
          if (this.cursor && /Last-Event-ID|cursor/.test(body.error || "")) {
            this.cursor = null; // not of this topic any more (recreated): start at its end
            continue;
          }
          this.onStatus("error", body.error || "bad request");
          return;
        }
        if (!resp.ok) {
          const after = Number(resp.headers.get("Retry-After"));
          if (after > 0) wait = after * 1000;
          const body = await resp.json().catch(() => ({}));
          throw new Error(body.error || `HTTP ${resp.status}`);
        }
        await this.read(resp.body);
        this.onStatus("retrying", "the stream ended");
      } catch (err) {
        if (this.stopped) return;
        this.onStatus("retrying", String(err.message || err));
      }
      await new Promise((r) => setTimeout(r, wait));
    }
  }

  async read(body) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let opened = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let m;
      while ((m = /\r?\n\r?\n/.exec(buffer))) {
        const frame = buffer.slice(0, m.index);
        buffer = buffer.slice(m.index + m[0].length);
        this.frame(frame);
        if (!opened && this.cursor) {
          opened = true;
          this.onStatus("live");
          if (this.onOpen) this.onOpen(this.cursor);
        }
      }
    }
  }

  frame(text) {
    let data = [];
    let event = "message";
    for (const line of text.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "id") this.cursor = value;
      else if (field === "data") data.push(value);
      else if (field === "event") event = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retryMs = Number(value);
    }
    if (!data.length) return;
    const payload = JSON.parse(data.join("\n"));
    if (event === "message") this.onEvent(payload);
    else if (event === "gap") this.onStatus("gap", payload);
  }
}
