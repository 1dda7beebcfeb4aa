// buyline.js under node's own test runner, against the real server binary: the backoff, resume
// with `since`, ops matched on their id. Needs node's global WebSocket (node 22, or node 20 with
// --experimental-websocket; .ci/run passes it).
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import net from "node:net";

import { BuylineClient, backoffDelay } from "../../static/buyline.js";
import { ingest, makeDataDir, startServer, token, tweet } from "./server.mjs";

/** How long a test waits for an event it expects. */
const WAIT_MS = 10_000;

/** Resolves with the first `type` event for which `accept` holds. */
function next(client, type, accept = () => true) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${type} event within ${WAIT_MS} ms`)); }, WAIT_MS);
    const off = client.on(type, (value) => {
      if (!accept(value)) return;
      clearTimeout(timer);
      off();
      resolve(value);
    });
  });
}

/** Collects the seqs of the tweets `client` receives. */
function seqsOf(client) {
  const seqs = [];
  client.on("tweet", (frame) => seqs.push(frame.seq));
  return seqs;
}

async function until(condition, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A loopback port nothing listens on (bound, then closed). */
async function deadPort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("backoffDelay", () => {
  test("doubles its ceiling from the first delay up to the cap, and draws below it", () => {
    const top = () => 0.999999;
    const ceilings = [0, 1, 2, 3, 4, 5, 6, 50, 5000].map((attempt) => backoffDelay(attempt, 100, 2000, top) + 1);
    assert.deepEqual(ceilings, [100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000]);
    assert.equal(backoffDelay(3, 100, 2000, () => 0), 0);
    assert.equal(backoffDelay(3, 100, 2000, () => 0.5), 400);
  });

  test("spreads clients out: draws are uniform over the ceiling (full jitter)", () => {
    const draws = Array.from({ length: 2000 }, () => backoffDelay(4, 100, 10_000));
    assert.ok(draws.every((delay) => delay >= 0 && delay < 1600));
    const low = draws.filter((delay) => delay < 800).length;
    assert.ok(low > 800 && low < 1200, `about half below the middle, got ${low} of 2000`);
  });
});

describe("BuylineClient against the real server", () => {
  test("ops are promises matched on their id, and a refused op rejects with its code", async () => {
    const server = await startServer();
    const client = new BuylineClient({ url: `ws://${server.addr}/v1/stream`, token: await token(server, "customer", "node-buyer") });
    try {
      // Sent together: each reply finds its own promise.
      const [pong, subscribed, held] = await Promise.all([client.ping(), client.subscribe("buyable"), client.reserve("acme-lamp", 2)]);
      assert.equal(pong.type, "pong");
      assert.equal(subscribed.timeline, "buyable");
      assert.equal(held.reservation.quantity, 2);
      assert.equal(held.remaining, 48);
      const declined = await client.checkout({
        reservation: held.reservation.id,
        shipping: { name: "Ada", line1: "1 Square", city: "London", postal_code: "SW1", country: "GB" },
        payment: { number: "4000000000000002", exp_month: 12, exp_year: 2035, cvc: "123", name: "Ada" },
      }).then(() => null, (error) => error);
      assert.equal(declined?.code, "card_declined");
      const order = await client.checkout({
        reservation: held.reservation.id,
        shipping: { name: "Ada", line1: "1 Square", city: "London", postal_code: "SW1", country: "GB" },
        payment: { number: "4242424242424242", exp_month: 12, exp_year: 2035, cvc: "123", name: "Ada" },
        idempotencyKey: "node-pay-1",
      });
      assert.match(order.id, /^ord_/);
      const gone = await client.release(held.reservation.id).then(() => null, (error) => error);
      assert.equal(gone?.code, "reservation_not_found");
      const unknown = await client.subscribe("product:no-such-thing").then(() => null, (error) => error);
      assert.equal(unknown?.code, "not_found");
      assert.equal(client.subscriptions.has("product:no-such-thing"), false, "a refused subscription is not resumed");
    } finally {
      client.close();
      await server.stop();
    }
  });

  test("resumes every subscription with since = the last seq seen: no tweet lost, none twice", async () => {
    const server = await startServer();
    const dead = await deadPort();
    let offline = false;
    const sockets = [];
    const sent = [];
    // The real WebSocket, pointed at a port nothing listens on while "offline" (a real refused
    // connection), recording what the client sends.
    class TestSocket extends WebSocket {
      constructor(url) {
        super(offline ? url.replace(`:${server.port}/`, `:${dead}/`) : url);
        sockets.push(this);
      }
      send(data) {
        sent.push(JSON.parse(data));
        super.send(data);
      }
    }
    const client = new BuylineClient({ url: `ws://${server.addr}/v1/stream`, WebSocket: TestSocket, backoffInitialMs: 50, backoffMaxMs: 200 });
    const seqs = seqsOf(client);
    const gaps = [];
    client.on("gap", (frame) => gaps.push(frame));
    try {
      await client.subscribe("all");
      await client.subscribe("tag:lamps");
      await ingest(server, [tweet(1, "one", { hashtags: ["lamps"] }), tweet(2, "two", { author: "x" }), tweet(3, "three", { product: "acme-lamp" })]);
      await until(() => seqs.length === 3, "the first three tweets");
      const lastSeen = seqs[2];

      offline = true;
      const reconnecting = next(client, "state", ({ state }) => state === "reconnecting");
      sockets.at(-1).close();
      await reconnecting;
      // While the client cannot reach the server, three more tweets come in.
      await ingest(server, [tweet(4, "four", { author: "x" }), tweet(5, "five", { hashtags: ["lamps"] }), tweet(6, "six", { author: "y" })]);
      await next(client, "state", ({ state, attempt }) => state === "reconnecting" && attempt >= 2);
      sent.length = 0;
      offline = false;
      await next(client, "state", ({ state }) => state === "live");
      await until(() => seqs.length === 6, "the three tweets sent while away");

      const resumed = sent.filter((frame) => frame.op === "subscribe").map(({ timeline, since }) => ({ timeline, since }));
      assert.deepEqual(resumed.sort((a, b) => a.timeline.localeCompare(b.timeline)), [
        { timeline: "all", since: lastSeen },
        { timeline: "tag:lamps", since: lastSeen },
      ]);
      assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), "in seq order");
      assert.equal(new Set(seqs).size, 6, "none twice");
      assert.deepEqual(gaps, []);
      // And it stays live: the next tweet comes too.
      await ingest(server, [tweet(7, "seven", { author: "x" })]);
      await until(() => seqs.length === 7, "a live tweet after the resume");
    } finally {
      client.close();
      await server.stop();
    }
  });

  test("reconnects with jittered delays that double up to the cap, then resumes after a server restart", async () => {
    const data = makeDataDir();
    let server = await startServer({ dataDir: data.dir });
    // The top of every draw, so the delays show the ceilings.
    const client = new BuylineClient({ url: `ws://${server.addr}/v1/stream`, backoffInitialMs: 40, backoffMaxMs: 300, random: () => 0.999999 });
    const delays = [];
    client.on("state", ({ state, delayMs }) => state === "reconnecting" && delayMs !== undefined && delays.push(delayMs));
    const seqs = seqsOf(client);
    try {
      await client.subscribe("all");
      await ingest(server, [tweet(1, "before", { author: "x" })]);
      await until(() => seqs.length === 1, "the first tweet");
      await server.stop({ kill: true });
      await until(() => delays.length >= 6, "six reconnection attempts");
      assert.deepEqual(delays.slice(0, 6), [39, 79, 159, 299, 299, 299]);

      const gap = next(client, "gap");
      server = await startServer({ dataDir: data.dir, listen: server.addr });
      await next(client, "state", ({ state }) => state === "live");
      // The new run kept no history: the resume (since = the last seq seen) is told so.
      const frame = await gap;
      assert.equal(frame.since, seqs[0]);
      assert.ok(frame.oldest > seqs[0]);
      await ingest(server, [tweet(2, "after", { author: "x" })]);
      await until(() => seqs.length === 2, "a tweet after the restart");
      assert.ok(seqs[1] > seqs[0]);
    } finally {
      client.close();
      await server.stop();
      data.remove();
    }
  });

  test("an op with no reply in time rejects with timeout, and close() rejects what waits", async () => {
    const dead = await deadPort();
    const client = new BuylineClient({ url: `ws://127.0.0.1:${dead}/v1/stream`, opTimeoutMs: 200, backoffInitialMs: 50, backoffMaxMs: 100 });
    const late = await client.ping().then(() => null, (error) => error);
    assert.equal(late?.code, "timeout");
    const waiting = client.reserve("acme-lamp");
    client.close();
    const closed = await waiting.then(() => null, (error) => error);
    assert.equal(closed?.code, "closed");
    assert.equal(client.state, "closed");
  });
});
