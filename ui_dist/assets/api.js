// The only place that talks to the gateway: /api/* over fetch, /ws for the live log feed.

export class ApiError extends Error {
  constructor(status, body) {
    const err = body && body.error ? body.error : {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.param = err.param || null;
    this.code = err.code || null;
  }
}

export async function api(method, path, body) {
  const init = {method, headers: {}, credentials: "same-origin"};
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  let data = null;
  const text = await res.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (res.status === 401) {
    location.reload(); // the session ended: the server answers / with the sign-in page
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});
export const put = (path, body) => api("PUT", path, body);
export const del = (path) => api("DELETE", path);

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** One shared WebSocket; subscribers get each batch of new log records. Reconnects with backoff. */
class LiveFeed {
  constructor() {
    this.subscribers = new Set();
    this.ws = null;
    this.retry = 500;
    this.connected = false;
  }
  subscribe(fn) {
    this.subscribers.add(fn);
    this.ensure();
    return () => this.subscribers.delete(fn);
  }
  ensure() {
    if (this.ws) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${scheme}://${location.host}/ws`);
    this.ws = ws;
    ws.onopen = () => { this.retry = 500; this.setConnected(true); };
    ws.onmessage = (event) => {
      const msg = JSON.parse(event.data);
      if (msg.type === "logs") for (const fn of this.subscribers) fn(msg.items);
    };
    ws.onclose = () => {
      this.ws = null;
      this.setConnected(false);
      setTimeout(() => this.ensure(), this.retry);
      this.retry = Math.min(this.retry * 2, 10000);
    };
  }
  setConnected(on) {
    this.connected = on;
    document.getElementById("live-dot")?.classList.toggle("on", on);
    document.getElementById("live-dot")?.setAttribute("title", on ? "Live feed connected" : "Live feed reconnecting");
  }
}

export const live = new LiveFeed();
