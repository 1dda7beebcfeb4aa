// Test support: the real buyline binary on a free loopback port, with a temp data dir, a small
// catalog and demo mode; stopped by its pid. Tokens, ingest and reservations over real HTTP.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));

/** The server binary: BUYLINE_BIN, or the debug build `cargo test` made. */
export const BUYLINE_BIN = process.env.BUYLINE_BIN ?? path.resolve(here, "../../target/debug/buyline");

/** How long the server may take to log its address. */
const START_TIMEOUT_MS = 30_000;

/** A partner and four products: one plentiful, one of 3 units, one a customer with 3 s holds,
 * one of 1. */
export const CATALOG = {
  partners: [{ id: "acme", name: "Acme Goods", accounts: ["AcmeGoods"], platform: "direct", kind: "brand" }],
  products: [
    {
      id: "acme-lamp",
      partner: "acme",
      title: "Brass Desk Lamp",
      description: "A heavy brass lamp with a linen shade, numbered by hand.",
      image: "/favicon.svg",
      price: { amount: 4500, currency: "usd" },
      urls: ["https://acme.example/lamp"],
      limited_edition: true,
      stock: 50,
      hold_seconds: 300,
    },
    {
      id: "acme-mug",
      partner: "acme",
      title: "Enamel Camp Mug",
      description: "Blue enamel, 350 ml.",
      image: "/favicon.svg",
      price: { amount: 1200, currency: "usd" },
      urls: ["https://acme.example/mug"],
      stock: 3,
    },
    {
      id: "acme-pin",
      partner: "acme",
      title: "Enamel Pin",
      description: "One a customer.",
      image: "/favicon.svg",
      price: { amount: 500, currency: "usd" },
      urls: ["https://acme.example/pin"],
      stock: 20,
      per_customer_limit: 1,
      hold_seconds: 3,
    },
    {
      id: "acme-kite",
      partner: "acme",
      title: "Silk Kite",
      description: "One of one.",
      image: "/favicon.svg",
      price: { amount: 9900, currency: "usd" },
      urls: ["https://acme.example/kite"],
      stock: 1,
    },
  ],
};

/** A data dir and catalog that outlive one server process (for restarts on the same port). */
export function makeDataDir() {
  const dir = mkdtempSync(path.join(tmpdir(), "buyline-browser-"));
  writeFileSync(path.join(dir, "catalog.json"), JSON.stringify(CATALOG));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts the binary on `listen` (a free port by default) and waits for "serving on". */
export async function startServer({ dataDir, listen = "127.0.0.1:0" } = {}) {
  const owned = dataDir ? null : makeDataDir();
  const dir = dataDir ?? owned.dir;
  const env = { ...process.env, NO_COLOR: "1" };
  delete env.RUST_LOG;
  const child = spawn(BUYLINE_BIN, [
    "serve", "--listen", listen, "--data-dir", path.join(dir, "data"), "--catalog", path.join(dir, "catalog.json"),
    "--firehose", "none", "--demo", "--shards", "2",
  ], { env, stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const addr = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`buyline did not start in ${START_TIMEOUT_MS} ms:\n${log}`)), START_TIMEOUT_MS);
    const onData = (chunk) => {
      log += chunk;
      const match = /serving on http:\/\/([^/\s]+)/.exec(log);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (chunk) => { log += chunk; });
    child.on("error", (error) => { clearTimeout(timer); reject(error); });
    child.on("exit", (code) => { clearTimeout(timer); reject(new Error(`buyline exited (${code}) before serving:\n${log}`)); });
  });
  const exited = new Promise((resolve) => child.on("exit", resolve));
  return {
    addr,
    port: Number(addr.split(":").pop()),
    url: `http://${addr}`,
    pid: child.pid,
    dataDir: dir,
    log: () => log,
    /** SIGTERM by pid (SIGKILL with `kill: true`), then waits for the exit. */
    async stop({ kill = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, kill ? "SIGKILL" : "SIGTERM");
      await exited;
      owned?.remove();
    },
  };
}

/** A demo token for `role` ("customer", "ingest", ...) and `id`. */
export async function token(server, role, id) {
  const response = await fetch(`${server.url}/v1/dev/tokens`, { method: "POST", body: JSON.stringify({ [role]: id }) });
  if (!response.ok) throw new Error(`token: HTTP ${response.status}`);
  return (await response.json()).token;
}

/** A native tweet. `product` (a CATALOG id) makes it link that product, so it gets a button. */
export function tweet(id, text, { author = "AcmeGoods", product, hashtags = [] } = {}) {
  const url = product ? CATALOG.products.find((p) => p.id === product).urls[0] : null;
  return {
    id: String(id),
    author: { id: `u-${author}`, screen_name: author, name: author === "AcmeGoods" ? "Acme Goods" : author },
    text: url ? `${text} ${url}` : text,
    created_at: "2014-09-08T16:00:00Z",
    urls: url ? [url] : [],
    hashtags,
  };
}

/** Posts tweets to /v1/ingest; fails unless all were accepted. */
export async function ingest(server, tweets) {
  const response = await fetch(`${server.url}/v1/ingest`, {
    method: "POST",
    headers: { authorization: `Bearer ${await token(server, "ingest", "tests")}` },
    body: tweets.map((t) => JSON.stringify(t)).join("\n") + "\n",
  });
  const report = await response.json();
  if (!response.ok || report.accepted !== tweets.length) throw new Error(`ingest: ${JSON.stringify(report)}`);
  return report;
}

/** Another buyer's hold over REST: `{reservation, remaining}` or the error body. */
export async function reserveAs(server, customerToken, product, quantity = 1) {
  const response = await fetch(`${server.url}/v1/reservations`, {
    method: "POST",
    headers: { authorization: `Bearer ${customerToken}`, "content-type": "application/json" },
    body: JSON.stringify({ product, quantity }),
  });
  return { status: response.status, body: await response.json() };
}

/** Pays for a hold over REST with the sandbox's good visa. */
export async function payAs(server, customerToken, reservation) {
  const response = await fetch(`${server.url}/v1/orders`, {
    method: "POST",
    headers: { authorization: `Bearer ${customerToken}`, "content-type": "application/json" },
    body: JSON.stringify({
      reservation,
      shipping: { name: "Other Buyer", line1: "1 Main St", city: "Springfield", postal_code: "12345", country: "US" },
      payment: { number: "4242424242424242", exp_month: 12, exp_year: 2035, cvc: "123", name: "Other Buyer" },
    }),
  });
  return { status: response.status, body: await response.json() };
}
