// buyline.js: a client for buyline's `/v1/stream` WebSocket (docs/PROTOCOL.md), as an ES module
// with no dependencies. It runs in browsers and in node 20+ (with its global WebSocket).
//
//   import { BuylineClient } from "/buyline.js";
//   const client = new BuylineClient({ token });
//   client.on("tweet", (frame) => ...);
//   await client.subscribe("buyable");
//
// Every op is a promise matched on the op's `id`. The connection comes back by itself after a
// drop, with exponential backoff and full jitter, and every subscription resumes with `since` =
// the last seq this client saw (and `epoch`, when the server sends one), so nothing the server
// still retains is lost and nothing arrives twice. With `--bus` the server names the stream's
// `epoch`; a different one on resume means the stream was made again and its seqs started over,
// so the client says so (a `reset` event) and resumes from the start of the new stream.

/** Defaults, each overridable in the constructor's options. */
export const DEFAULTS = Object.freeze({
  /** How long an op waits for its reply (including for a connection to send it on). */
  opTimeoutMs: 10_000,
  /** The first reconnection waits up to this long (full jitter: anywhere from 0 to it). */
  backoffInitialMs: 250,
  /** No reconnection waits longer than this. */
  backoffMaxMs: 10_000,
  /** After `lagged`, reconnect at once and resume with `since` (once no op awaits its reply). */
  resumeOnLagged: true,
});

/** Ops waiting for their reply at once; past this an op is refused (a client bug, not load). */
const MAX_PENDING_OPS = 1000;

/** The exponent is capped so `2 ** attempt` stays a finite number whatever the attempt count. */
const MAX_BACKOFF_EXPONENT = 30;

/**
 * The wait before reconnection attempt `attempt` (0 for the first): "full jitter", a uniform
 * draw from [0, min(maxMs, initialMs * 2^attempt)), so clients that lost the same server do not
 * all come back at the same moment. `random` returns a number in [0, 1), like Math.random.
 */
export function backoffDelay(attempt, initialMs, maxMs, random = Math.random) {
  const exponent = Math.min(Math.max(0, attempt), MAX_BACKOFF_EXPONENT);
  const ceiling = Math.min(maxMs, initialMs * 2 ** exponent);
  return Math.floor(random() * ceiling);
}

/** An op that failed: `code` is one of the contract's error codes, or, from the client itself,
 * `timeout` (no reply in time), `disconnected` (the connection closed before the reply) or
 * `closed` (the client was closed). */
export class BuylineError extends Error {
  constructor(code, message, frame = null) {
    super(message);
    this.name = "BuylineError";
    this.code = code;
    /** The server's error frame, when the server sent one. */
    this.frame = frame;
  }
}

/** Reply frame types that answer an op (matched on `id`). An `order` frame with an `id` is the
 * reply to `checkout`; without one it is a confirmation pushed from another connection. */
const REPLY_TYPES = new Set(["subscribed", "unsubscribed", "reserved", "released", "order", "pong", "error"]);

/** Events a listener may take with `on`. */
const EVENTS = new Set(["tweet", "stock", "order", "lagged", "gap", "reset", "state", "error", "subscribed"]);

/** The stream URL of the page this script runs in (ws: or wss: as the page). */
function defaultStreamUrl() {
  if (typeof location === "undefined") {
    throw new Error("BuylineClient: give options.url outside a browser");
  }
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/stream`;
}

export class BuylineClient {
  /**
   * options: `url` (default: this page's `/v1/stream`), `token` (a customer token, or none for
   * anonymous), `opTimeoutMs`, `backoffInitialMs`, `backoffMaxMs`, `resumeOnLagged`,
   * `random` (for the jitter; Math.random), `WebSocket` (a constructor; the global one), and
   * `connect` (false to wait for `connect()`; true by default).
   */
  constructor(options = {}) {
    this.url = options.url ?? defaultStreamUrl();
    this.token = options.token ?? null;
    this.opTimeoutMs = options.opTimeoutMs ?? DEFAULTS.opTimeoutMs;
    this.backoffInitialMs = options.backoffInitialMs ?? DEFAULTS.backoffInitialMs;
    this.backoffMaxMs = options.backoffMaxMs ?? DEFAULTS.backoffMaxMs;
    this.resumeOnLagged = options.resumeOnLagged ?? DEFAULTS.resumeOnLagged;
    this.random = options.random ?? Math.random;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    if (typeof this.WebSocket !== "function") {
      throw new Error("BuylineClient: no WebSocket here (node needs 22+, or 20 with --experimental-websocket)");
    }
    if (!(this.backoffInitialMs > 0 && this.backoffMaxMs >= this.backoffInitialMs)) {
      throw new Error("BuylineClient: need 0 < backoffInitialMs <= backoffMaxMs");
    }
    /** "idle" (before connect), "connecting", "live", "reconnecting" or "closed". */
    this.state = "idle";
    /** The newest tweet seq this client received, over every connection so far. */
    this.lastSeq = null;
    /** The stream's epoch from the server's last `subscribed` (with `--bus`), or null. */
    this.epoch = null;
    /** timeline -> { since, follows, waiters }: what to resume after a reconnection. */
    this.subscriptions = new Map();
    this._listeners = new Map();
    this._pending = new Map(); // op id -> { resolve, reject, timer, onReply }
    this._queued = []; // ops waiting for a live connection: { frame, entry }
    this._nextId = 1;
    this._socket = null;
    this._attempt = 0;
    this._retryTimer = null;
    this._lagResumeWanted = false;
    if (options.connect !== false) this.connect();
  }

  /** Listens for `type` (tweet, stock, order, lagged, gap, reset, state, error, subscribed); returns a
   * function that removes the listener. */
  on(type, listener) {
    if (!EVENTS.has(type)) throw new Error(`BuylineClient: no event "${type}"`);
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(listener);
    return () => this._listeners.get(type)?.delete(listener);
  }

  /** Opens the connection (called by the constructor unless `connect: false`). */
  connect() {
    if (this.state !== "idle" && this.state !== "closed") return;
    this._attempt = 0;
    this._open("connecting");
  }

  /** Closes for good: no reconnection; every waiting op is rejected with `closed`. */
  close() {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const socket = this._socket;
    this._socket = null;
    this._setState("closed");
    this._failAll("closed", "the client was closed");
    if (socket) socket.close(1000, "client closed");
  }

  /** Signs in (or out, with null): reconnects at once with the token, resuming every
   * subscription. A signed-in connection also receives the buyer's `order` pushes. */
  setToken(token) {
    this.token = token ?? null;
    if (this.state === "idle" || this.state === "closed") return;
    this._reconnectNow("token changed");
  }

  /** Subscribes to `timeline` (`buyable`, `all`, `user:NAME`, `tag:TAG`, `home`, `product:ID`).
   * options: `since` (replay the retained tweets after it first), `follows` (for `home`).
   * Resolves with the `subscribed` frame. The subscription is kept and resumed after every
   * reconnection until `unsubscribe`. */
  subscribe(timeline, options = {}) {
    const previous = this.subscriptions.get(timeline);
    const subscription = {
      since: options.since ?? null,
      follows: options.follows ?? null,
      waiters: previous?.waiters ?? [],
    };
    this.subscriptions.set(timeline, subscription);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        subscription.waiters = subscription.waiters.filter((w) => w.resolve !== resolve);
        reject(new BuylineError("timeout", `no reply to subscribe ${timeline} within ${this.opTimeoutMs} ms`));
      }, this.opTimeoutMs);
      subscription.waiters.push({ resolve, reject, timer });
      // Live: send now. Otherwise the resume on the next open sends it.
      if (this.state === "live") this._sendSubscribe(timeline, subscription);
    });
  }

  /** Stops a subscription; resolves with the `unsubscribed` frame. */
  unsubscribe(timeline) {
    const subscription = this.subscriptions.get(timeline);
    this.subscriptions.delete(timeline);
    if (subscription) this._settleWaiters(subscription, "reject", new BuylineError("closed", `unsubscribed from ${timeline}`));
    return this._op({ op: "unsubscribe", timeline });
  }

  /** Takes a hold on `quantity` units of `product`; resolves with the `reserved` frame
   * (`reservation`, `remaining`). Needs a customer token. */
  reserve(product, quantity = 1, { idempotencyKey } = {}) {
    return this._op({ op: "reserve", product, quantity, ...(idempotencyKey ? { idempotency_key: idempotencyKey } : {}) });
  }

  /** Gives a hold back; resolves with the `released` frame. */
  release(reservation) {
    return this._op({ op: "release", reservation });
  }

  /** Pays for a hold. `shipping` is an ADDRESS or `{saved}`, `payment` a CARD or `{saved}`.
   * Resolves with the ORDER. A retry with the same `idempotencyKey` and request returns the
   * first order, so a checkout rejected with `disconnected` or `timeout` can be sent again. */
  async checkout({ reservation, shipping, payment, save, shareCardWithSeller, idempotencyKey }) {
    const frame = await this._op({
      op: "checkout",
      reservation,
      shipping,
      payment,
      ...(save !== undefined ? { save } : {}),
      ...(shareCardWithSeller !== undefined ? { share_card_with_seller: shareCardWithSeller } : {}),
      ...(idempotencyKey ? { idempotency_key: idempotencyKey } : {}),
    });
    return frame.order;
  }

  /** Resolves with the `pong` frame. */
  ping() {
    return this._op({ op: "ping" });
  }

  // ---- the connection ----

  _open(state) {
    this._setState(state);
    const url = new URL(this.url);
    if (this.token) url.searchParams.set("token", this.token);
    let socket;
    try {
      socket = new this.WebSocket(url.toString());
    } catch (error) {
      // A malformed URL throws at once: that is not going to get better with retries.
      this._setState("closed");
      this._failAll("closed", `cannot open ${this.url}: ${error.message}`);
      return;
    }
    this._socket = socket;
    socket.onopen = () => {
      if (this._socket !== socket) return;
      this._attempt = 0;
      this._setState("live");
      this._resume();
      for (const { frame, entry } of this._queued.splice(0)) {
        if (this._pending.has(frame.id)) {
          entry.sent = true;
          socket.send(JSON.stringify(frame));
        }
      }
    };
    socket.onmessage = (event) => {
      if (this._socket !== socket) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return; // The server sends only JSON text frames; anything else is not for us.
      }
      this._dispatch(frame);
    };
    // Browsers follow `error` with `close`; some WebSocket implementations (node 20's) send only
    // `error` for a refused connection. Whichever comes first ends this socket, once.
    const lost = () => {
      if (this._socket !== socket) return;
      this._socket = null;
      try {
        socket.close();
      } catch {
        // Already closed or never opened: nothing to close.
      }
      this._failSent("disconnected", "the connection closed before the reply");
      this._scheduleReconnect();
    };
    socket.onerror = lost;
    socket.onclose = lost;
  }

  _scheduleReconnect() {
    const delayMs = backoffDelay(this._attempt, this.backoffInitialMs, this.backoffMaxMs, this.random);
    this._attempt += 1;
    this._setState("reconnecting", { attempt: this._attempt, delayMs });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      if (this.state === "reconnecting") this._open("reconnecting");
    }, delayMs);
  }

  /** Drops the connection and opens a new one at once (a new token, or resuming after lagged). */
  _reconnectNow(reason) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    const socket = this._socket;
    this._socket = null;
    if (socket) socket.close(1000, reason);
    this._failSent("disconnected", `the connection was replaced (${reason}) before the reply`);
    this._attempt = 0;
    this._open("reconnecting");
  }

  /** Sends every subscription again, each from where this client got to. */
  _resume() {
    for (const [timeline, subscription] of this.subscriptions) {
      this._sendSubscribe(timeline, subscription);
    }
  }

  _sendSubscribe(timeline, subscription) {
    const id = String(this._nextId++);
    const frame = { op: "subscribe", id, timeline };
    // The connection's tweets are one seq-ordered stream: having seen seq S, every tweet of every
    // subscription up to S has come (or was reported by gap or lagged). So resume from the later
    // of the subscription's own start and the last seq seen.
    const since = maxSeq(subscription.since, this.lastSeq);
    if (since !== null) frame.since = since;
    if (this.epoch !== null) frame.epoch = this.epoch;
    if (subscription.follows) frame.follows = subscription.follows;
    const entry = {
      sent: true,
      resolve: (reply) => {
        if (this.subscriptions.get(timeline) !== subscription) return;
        if (typeof reply.epoch === "string") {
          if (this.epoch !== null && reply.epoch !== this.epoch) {
            this._streamReset(reply.epoch);
            return;
          }
          this.epoch = reply.epoch;
        }
        // A fresh subscription starts at the seq the server had then; a resumed one keeps its own.
        if (subscription.since === null) subscription.since = reply.seq;
        this._settleWaiters(subscription, "resolve", reply);
        this._emit("subscribed", reply);
      },
      reject: (error) => {
        // A refused subscribe (bad timeline, too many) is not resumed again.
        if (error.frame && this.subscriptions.get(timeline) === subscription) {
          this.subscriptions.delete(timeline);
          this._settleWaiters(subscription, "reject", error);
        }
      },
      timer: null,
    };
    this._pending.set(id, entry);
    this._socket.send(JSON.stringify(frame));
  }

  _settleWaiters(subscription, how, value) {
    for (const waiter of subscription.waiters.splice(0)) {
      clearTimeout(waiter.timer);
      waiter[how](value);
    }
  }

  _op(body) {
    if (this.state === "closed") return Promise.reject(new BuylineError("closed", "the client is closed"));
    if (this._pending.size >= MAX_PENDING_OPS) {
      return Promise.reject(new BuylineError("rate_limited", `more than ${MAX_PENDING_OPS} ops await their reply`));
    }
    const id = String(this._nextId++);
    const frame = { ...body, id };
    return new Promise((resolve, reject) => {
      const entry = { sent: false, resolve, reject, timer: null };
      entry.timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new BuylineError("timeout", `no reply to ${body.op} within ${this.opTimeoutMs} ms`));
      }, this.opTimeoutMs);
      this._pending.set(id, entry);
      if (this.state === "live" && this._socket) {
        entry.sent = true;
        this._socket.send(JSON.stringify(frame));
      } else {
        this._queued.push({ frame, entry });
      }
    });
  }

  _dispatch(frame) {
    const pending = frame.id !== undefined && frame.id !== null ? this._pending.get(String(frame.id)) : undefined;
    if (pending && REPLY_TYPES.has(frame.type)) {
      this._pending.delete(String(frame.id));
      clearTimeout(pending.timer);
      if (frame.type === "error") pending.reject(new BuylineError(frame.code, frame.message, frame));
      else pending.resolve(frame);
      this._maybeResumeAfterLag();
      return;
    }
    switch (frame.type) {
      case "tweet":
        this.lastSeq = maxSeq(this.lastSeq, frame.seq);
        this._emit("tweet", frame);
        break;
      case "stock":
        this._emit("stock", frame);
        break;
      case "order":
        this._emit("order", frame);
        break;
      case "gap":
        this._emit("gap", frame);
        break;
      case "lagged":
        this._emit("lagged", frame);
        if (this.resumeOnLagged) {
          this._lagResumeWanted = true;
          this._maybeResumeAfterLag();
        }
        break;
      case "error":
        this._emit("error", new BuylineError(frame.code, frame.message, frame));
        break;
      default:
        break; // Frames added to the contract later are ignored here.
    }
  }

  /** The stream was made again (another epoch): seqs seen so far mean nothing in it. Resume every
   * subscription from the new stream's start (`since: 0`) on a fresh connection. Happens once an
   * epoch, so it cannot loop. */
  _streamReset(epoch) {
    this._emit("reset", { previousEpoch: this.epoch, epoch, lastSeq: this.lastSeq });
    this.epoch = epoch;
    this.lastSeq = null;
    for (const subscription of this.subscriptions.values()) subscription.since = 0;
    this._reconnectNow("the stream was reset");
  }

  /** After `lagged`, the dropped tweets come back only on a new connection resumed with `since`;
   * wait for replies still owed on this one, so no op is cut off by the resumption. */
  _maybeResumeAfterLag() {
    if (!this._lagResumeWanted || this.state !== "live") return;
    for (const entry of this._pending.values()) if (entry.sent) return;
    this._lagResumeWanted = false;
    this._reconnectNow("resuming after lagged");
  }

  /** Rejects ops sent on the connection that just went: their replies will never come. Ops not
   * yet sent stay queued for the next connection (within their timeout). */
  _failSent(code, message) {
    for (const [id, entry] of this._pending) {
      if (!entry.sent) continue;
      this._pending.delete(id);
      clearTimeout(entry.timer);
      entry.reject(new BuylineError(code, message));
    }
  }

  _failAll(code, message) {
    for (const entry of this._pending.values()) {
      clearTimeout(entry.timer);
      entry.reject(new BuylineError(code, message));
    }
    this._pending.clear();
    this._queued = [];
    for (const subscription of this.subscriptions.values()) {
      this._settleWaiters(subscription, "reject", new BuylineError(code, message));
    }
  }

  _setState(state, detail = {}) {
    this.state = state;
    this._emit("state", { state, ...detail });
  }

  _emit(type, value) {
    for (const listener of this._listeners.get(type) ?? []) {
      try {
        listener(value);
      } catch (error) {
        // One listener's bug must not stop the others or the client.
        console.error(`buyline.js: a "${type}" listener threw`, error);
      }
    }
  }
}

/** The larger of two seqs, either possibly null. */
function maxSeq(a, b) {
  if (a === null || a === undefined) return b ?? null;
  if (b === null || b === undefined) return a;
  return Math.max(a, b);
}
