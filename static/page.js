// The page at /: timelines with live buy buttons, the buy flow (sign in, hold, review, ship and
// pay, confirmation), orders and the wallet. Built on buyline.js; no dependencies.
import { BuylineClient } from "/buyline.js";

/** Tweets kept on the page; older ones are removed as new ones arrive. */
const MAX_TWEETS = 100;
/** `product:<id>` subscriptions kept for stock on timelines other than `buyable` (the server
 * allows 64 subscriptions a connection). */
const MAX_PRODUCT_SUBSCRIPTIONS = 40;
/** Notices shown at once; the oldest goes first. */
const MAX_NOTICES = 3;
/** Order list pages read (1,000 orders each) before giving up on the oldest. */
const MAX_ORDER_PAGES = 5;
const SESSION_KEY = "buyline-page-session";

const $ = (id) => document.getElementById(id);

/** Errors in words, for every contract code and the client's own. */
const ERROR_WORDS = {
  bad_request: "Something in the form is not right",
  unknown_op: "The page sent something the server does not know. Reload the page.",
  too_large: "That is too long.",
  unauthorized: "Your sign-in has expired. Sign in again.",
  forbidden: "This account cannot do that (only customer accounts can buy).",
  not_found: "This product is no longer for sale.",
  rate_limited: "Too many requests right now. Wait a moment and try again.",
  sold_out: "Sold out: every unit has been taken.",
  insufficient_stock: "There are not enough left for that quantity.",
  sale_not_started: "The sale has not started yet.",
  sale_ended: "The sale has ended.",
  limit_exceeded: "You have reached this product's limit per customer.",
  reservation_expired: "Your hold expired, and the item went back on sale. You were not charged.",
  reservation_not_found: "Your hold is gone (it expired or was released). You were not charged.",
  idempotency_mismatch: "This payment was already tried with other details. Start over with a new hold.",
  card_declined: "Your card was declined. Try another card.",
  insufficient_funds: "Your card has insufficient funds. Try another card.",
  expired_card: "Your card has expired. Check the expiry date or use another card.",
  incorrect_cvc: "The CVC is not right. Check the 3 or 4 digits on your card.",
  invalid_card_number: "That card number is not valid. Check it and try again.",
  unavailable: "The shop is briefly unavailable. Try again in a few seconds.",
  internal: "Something went wrong on our side. Try again.",
  timeout: "No answer from the server in time. Try again.",
  disconnected: "The connection dropped before the answer came. Try again: you will not be charged twice.",
  closed: "The connection is closed. Reload the page.",
  network: "Cannot reach the server. Check the connection and try again.",
};

/** Errors after which paying again with the same hold may work. */
const RETRY_PAY = new Set([
  "bad_request", "card_declined", "insufficient_funds", "expired_card", "incorrect_cvc",
  "invalid_card_number", "unavailable", "internal", "timeout", "disconnected", "rate_limited", "network",
]);
/** Errors after which taking a hold again may work. */
const RETRY_HOLD = new Set(["unavailable", "internal", "timeout", "disconnected", "rate_limited", "network"]);

/** The message for an error, in words: the code's sentence, and the server's detail where the
 * sentence alone would not say what to fix. */
function inWords(error) {
  const words = ERROR_WORDS[error?.code] ?? "Something went wrong. Try again.";
  if (error?.code === "bad_request" && error.message) return `${words}: ${error.message}`;
  return words;
}

// ---- small helpers ----

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

function money(price) {
  try {
    return (price.amount / 100).toLocaleString("en-US", { style: "currency", currency: price.currency.toUpperCase() });
  } catch {
    return `${price.amount} ${price.currency}`;
  }
}

/** m:ss */
function minutesSeconds(ms) {
  const total = Math.max(0, Math.ceil(ms / 1000));
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

/** Reads an expiry as people type it: `MM/YY`, `MM/YYYY`, `M/YY`, with spaces or a dash, or
 * `MMYY`. Returns `{month, year}` or null. */
export function parseExpiry(text) {
  const compact = text.replace(/\s+/g, "");
  const match = /^(\d{1,2})[/-]?(\d{2}|\d{4})$/.exec(compact);
  if (!match) return null;
  const month = Number(match[1]);
  let year = Number(match[2]);
  if (month < 1 || month > 12) return null;
  if (match[2].length === 2) year += 2000;
  return { month, year };
}

// ---- signing in (demo tokens) ----

let session = loadSession();

function loadSession() {
  try {
    const stored = JSON.parse(localStorage.getItem(SESSION_KEY) ?? "null");
    return stored && typeof stored.token === "string" ? stored : null;
  } catch {
    return null;
  }
}

function saveSession(next) {
  session = next;
  if (next) localStorage.setItem(SESSION_KEY, JSON.stringify(next));
  else localStorage.removeItem(SESSION_KEY);
  $("account-name").textContent = next ? `Signed in as ${next.name}` : "";
  $("sign-in").hidden = Boolean(next);
  $("sign-out").hidden = !next;
  if (client.token !== (next?.token ?? null)) client.setToken(next?.token ?? null);
}

/** A REST call with the session's token; throws `{code, message}` as the server words it. */
async function api(method, path, body) {
  let response;
  try {
    response = await fetch(path, {
      method,
      headers: {
        ...(body ? { "content-type": "application/json" } : {}),
        ...(session ? { authorization: `Bearer ${session.token}` } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch {
    throw { code: "network", message: "network error" };
  }
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = data && data.code ? data : { code: "internal", message: `HTTP ${response.status}` };
    if (error.code === "unauthorized" && session) saveSession(null);
    throw error;
  }
  return data;
}

let signInDone = null;

/** Resolves true once signed in, false if the buyer cancels. */
function ensureSignedIn() {
  if (session) return Promise.resolve(true);
  $("signin-error").textContent = "";
  if (!$("signin-name").value) $("signin-name").value = `buyer-${Math.random().toString(36).slice(2, 7)}`;
  $("signin-dialog").showModal();
  $("signin-name").select();
  return new Promise((resolve) => {
    signInDone = resolve;
  });
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("signin-name").value.trim();
  if (!name) {
    $("signin-error").textContent = "Type a name to sign in with.";
    return;
  }
  try {
    const { token } = await api("POST", "/v1/dev/tokens", { customer: name });
    saveSession({ name, token });
    $("signin-dialog").close("signed-in");
  } catch (error) {
    $("signin-error").textContent = error.code === "not_found"
      ? "This server does not hand out demo sign-ins (demo mode is off)."
      : inWords(error);
  }
});
$("signin-cancel").addEventListener("click", () => $("signin-dialog").close("cancel"));
$("signin-dialog").addEventListener("close", () => {
  const done = signInDone;
  signInDone = null;
  done?.(Boolean(session));
});
$("sign-in").addEventListener("click", () => ensureSignedIn().then((ok) => ok && refreshView()));
$("sign-out").addEventListener("click", () => {
  saveSession(null);
  refreshView();
});

// ---- the stream ----

const client = new BuylineClient({ token: session?.token, backoffInitialMs: 250, backoffMaxMs: 5000 });

const STATE_WORDS = {
  idle: "Connecting…",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  closed: "Offline",
};

client.on("state", ({ state }) => {
  const badge = $("connection");
  badge.dataset.state = state;
  badge.textContent = STATE_WORDS[state] ?? state;
});

function notice(text) {
  const box = $("notices");
  const dismiss = el("button", { type: "button", class: "secondary", text: "Dismiss" });
  const item = el("div", { class: "notice" }, el("span", { text }), dismiss);
  dismiss.addEventListener("click", () => item.remove());
  box.append(item);
  while (box.children.length > MAX_NOTICES) box.firstElementChild.remove();
}

client.on("gap", (frame) => {
  // Seqs rise but may skip (a restart starts a new block), so this names the range, not a count.
  notice(`Tweets on ${frame.timeline} after #${frame.since} may have been missed while the page was away: the server now keeps them only from #${frame.oldest} on.`);
});
client.on("reset", () => {
  notice("The server's tweet stream was started over: showing it again from its start.");
});
client.on("lagged", (frame) => {
  notice(`The connection fell behind and ${frame.dropped} tweet${frame.dropped === 1 ? "" : "s"} were dropped; catching up on what the server still has.`);
});
client.on("error", (error) => notice(`The server said: ${inWords(error)}`));

// ---- stock ----

/** product id -> remaining, the newest we heard of. */
const remaining = new Map();
/** product id -> what a tweet's button said about it (title, price, merchant...). */
const products = new Map();
/** `product:<id>` timelines this page subscribed to for stock. */
const productSubscriptions = new Set();

function setRemaining(product, count) {
  remaining.set(product, count);
  for (const box of document.querySelectorAll(".buy")) {
    if (box.dataset.product === product) paintButton(box, count);
  }
  if (buying && buying.product === product) $("review-remaining").textContent = leftWords(count);
}

function leftWords(count) {
  return count > 0 ? `${count} left` : "Sold out";
}

function paintButton(box, count) {
  const left = box.querySelector(".left");
  const button = box.querySelector(".buy-button");
  const title = products.get(box.dataset.product)?.title ?? "this product";
  left.textContent = leftWords(count);
  left.classList.toggle("none", count <= 0);
  button.disabled = count <= 0;
  button.textContent = count > 0 ? "Buy" : "Sold out";
  button.setAttribute("aria-label", count > 0 ? `Buy ${title}` : `${title}: sold out`);
}

client.on("stock", (frame) => setRemaining(frame.product, frame.remaining));

/** Stock frames come with `buyable`; on other timelines, subscribe to the products shown. */
function watchStock(product) {
  if (currentTimeline === "buyable" || productSubscriptions.has(product)) return;
  if (productSubscriptions.size >= MAX_PRODUCT_SUBSCRIPTIONS) return;
  productSubscriptions.add(product);
  client.subscribe(`product:${product}`).catch(() => productSubscriptions.delete(product));
}

// ---- timelines ----

let currentTimeline = null;
/** Tweets at or below this seq are a replay: their `remaining` is older than what we know. */
let liveFromSeq = 0;
let tweetCount = 0;

const ARGUMENT_LABELS = {
  user: ["Screen name", "e.g. Burberry"],
  tag: ["Hashtag", "e.g. RED"],
  home: ["Accounts you follow (comma separated)", "e.g. Burberry, RED, Pharrell"],
};

function syncTimelineForm() {
  const kind = $("timeline-kind").value;
  const label = ARGUMENT_LABELS[kind];
  $("timeline-arg-field").hidden = !label;
  if (label) {
    $("timeline-arg-label").textContent = label[0];
    $("timeline-arg").placeholder = label[1];
  }
}
$("timeline-kind").addEventListener("change", syncTimelineForm);

/** The timeline and `follows` the form asks for, or a message saying what is missing. */
function chosenTimeline() {
  const kind = $("timeline-kind").value;
  const argument = $("timeline-arg").value.trim();
  if (kind === "buyable" || kind === "all") return { timeline: kind };
  if (kind === "home") {
    const follows = argument.split(/[\s,]+/).map((name) => name.replace(/^@/, "")).filter(Boolean);
    if (!follows.length) return { error: "Type at least one account to follow." };
    return { timeline: "home", follows };
  }
  const name = argument.replace(/^[@#]/, "");
  if (!name) return { error: kind === "user" ? "Type a screen name." : "Type a hashtag." };
  return { timeline: `${kind}:${name}` };
}

async function showTimeline({ timeline, follows }) {
  $("timeline-error").textContent = "";
  if (currentTimeline && currentTimeline !== timeline) client.unsubscribe(currentTimeline).catch(() => {});
  for (const product of productSubscriptions) client.unsubscribe(`product:${product}`).catch(() => {});
  productSubscriptions.clear();
  currentTimeline = timeline;
  $("tweets").replaceChildren();
  tweetCount = 0;
  $("timeline-status").textContent = `Waiting for tweets on ${timeline}…`;
  try {
    const reply = await client.subscribe(timeline, follows ? { follows } : {});
    liveFromSeq = reply.seq;
  } catch (error) {
    if (currentTimeline === timeline) $("timeline-error").textContent = `Cannot show ${timeline}: ${inWords(error)}`;
  }
}

$("timeline-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const choice = chosenTimeline();
  if (choice.error) {
    $("timeline-error").textContent = choice.error;
    $("timeline-arg").focus();
    return;
  }
  showTimeline(choice);
});

client.on("tweet", (frame) => {
  const list = $("tweets");
  list.prepend(renderTweet(frame));
  while (list.children.length > MAX_TWEETS) list.lastElementChild.remove();
  tweetCount += 1;
  $("timeline-status").textContent = `${tweetCount} tweet${tweetCount === 1 ? "" : "s"} on ${currentTimeline}, newest first`;
});

function renderTweet(frame) {
  const tweet = frame.tweet;
  const article = el("article", { class: "tweet", "aria-labelledby": `tweet-${frame.seq}-author`, "data-seq": frame.seq },
    el("div", { class: "tweet-head" },
      el("strong", { id: `tweet-${frame.seq}-author`, text: tweet.author.name || tweet.author.screen_name }),
      el("span", { class: "muted", text: `@${tweet.author.screen_name}` }),
      el("span", { class: "muted", text: `· #${frame.seq}` })),
    el("p", { class: "tweet-text", text: tweet.text }));
  if (frame.buy) article.append(renderBuy(frame));
  return article;
}

function renderBuy(frame) {
  const buy = frame.buy;
  products.set(buy.product, buy);
  const known = remaining.get(buy.product);
  // A replayed tweet's count is older than one we heard since; a live tweet's is the newest.
  const count = known !== undefined && frame.seq <= liveFromSeq ? known : buy.remaining;
  remaining.set(buy.product, count);
  const button = el("button", { type: "button", class: "buy-button" });
  const box = el("div", { class: "buy", "data-product": buy.product },
    el("div", { class: "buy-info" },
      el("div", { class: "buy-title", text: buy.title }),
      el("div", { class: "muted" },
        el("span", { text: `${money(buy.price)} · ${buy.merchant} ` }),
        buy.limited_edition ? el("span", { class: "badge", text: "Limited edition" }) : null,
        " ",
        el("span", { class: "left" }))),
    button);
  button.addEventListener("click", () => startBuying(buy));
  paintButton(box, count);
  // Every button on the page shows the same count.
  if (known !== count) queueMicrotask(() => setRemaining(buy.product, count));
  watchStock(buy.product);
  return box;
}

// ---- the buy flow ----

/** The purchase in progress: `{product, button, reservation, expiresAt, holdKey, payKey}`. */
let buying = null;
let countdownTimer = null;

function showStep(id) {
  for (const step of document.querySelectorAll("#buy-dialog .step")) step.hidden = step.id !== id;
}

function fail(error, retry, retryLabel = "Try again") {
  $("failed-message").textContent = inWords(error);
  $("failed-retry").textContent = retryLabel;
  $("failed-retry").hidden = !retry;
  $("failed-retry").onclick = retry;
  showStep("step-failed");
  $(retry ? "failed-retry" : "failed-close").focus();
}

async function startBuying(button) {
  if (!(await ensureSignedIn())) return;
  buying = { product: button.product, button, reservation: null, expiresAt: 0, holdKey: `hold-${crypto.randomUUID()}`, payKey: null };
  $("buy-title").textContent = button.title;
  $("hold-line").hidden = true;
  $("pay-error").textContent = "";
  showStep("step-holding");
  if (!$("buy-dialog").open) $("buy-dialog").showModal();
  await takeHold();
}

async function takeHold() {
  const purchase = buying;
  showStep("step-holding");
  let reply;
  try {
    reply = await client.reserve(purchase.product, 1, { idempotencyKey: purchase.holdKey });
  } catch (error) {
    if (buying !== purchase) return;
    if (error.code === "limit_exceeded" && Date.now() - (purchase.expiredAt ?? -Infinity) < 5_000) {
      // The hold that just expired on this clock may still count against the limit for a
      // moment: the server ends due holds in a sweep every 250 ms. Ask again shortly.
      await new Promise((resolve) => setTimeout(resolve, 300));
      if (buying === purchase) await takeHold();
      return;
    }
    if (error.code === "unauthorized") saveSession(null);
    if (error.code === "sold_out") setRemaining(purchase.product, 0);
    fail(error, RETRY_HOLD.has(error.code) ? () => takeHold() : null);
    return;
  }
  if (buying !== purchase) {
    // Cancelled while the hold was being taken: give it back.
    client.release(reply.reservation.id).catch(() => {});
    return;
  }
  purchase.reservation = reply.reservation;
  purchase.expiresAt = Date.parse(reply.reservation.expires_at);
  purchase.payKey = `pay-${reply.reservation.id}`;
  setRemaining(purchase.product, reply.remaining);
  startCountdown();
  await showReview(purchase);
}

function startCountdown() {
  clearInterval(countdownTimer);
  $("hold-line").hidden = false;
  const tick = () => {
    if (!buying?.reservation) return;
    const left = buying.expiresAt - Date.now();
    $("hold-countdown").textContent = minutesSeconds(left);
    $("hold-countdown").classList.toggle("low", left < 30_000);
    if (left <= 0) holdExpired();
  };
  tick();
  countdownTimer = setInterval(tick, 500);
}

function holdExpired() {
  clearInterval(countdownTimer);
  const purchase = buying;
  if (!purchase || $("step-done").hidden === false) return;
  purchase.expiredAt = purchase.expiresAt;
  purchase.reservation = null;
  $("hold-line").hidden = true;
  purchase.holdKey = `hold-${crypto.randomUUID()}`;
  fail({ code: "reservation_expired" }, () => takeHold(), "Take a new hold");
}

async function showReview(purchase) {
  const button = purchase.button;
  $("review-price").textContent = money(button.price);
  $("review-merchant").textContent = `from ${button.merchant}`;
  $("review-limited").hidden = !button.limited_edition;
  $("review-remaining").textContent = leftWords(remaining.get(purchase.product) ?? button.remaining);
  $("review-description").textContent = "";
  setImage(button.image, button.title);
  showStep("step-review");
  $("review-continue").focus();
  try {
    const product = await api("GET", `/v1/products/${encodeURIComponent(purchase.product)}`);
    if (buying !== purchase) return;
    $("review-description").textContent = product.description;
    setImage(product.image, product.title);
  } catch {
    // The review still shows what the button said; the description is a nicety.
  }
}

function setImage(src, title) {
  const image = $("review-image");
  image.alt = `${title}, product photo`;
  // Only web addresses: a catalog is admin input, and the page never loads other schemes.
  image.hidden = !/^(https?:\/\/|\/)/.test(src ?? "");
  if (!image.hidden && image.getAttribute("src") !== src) image.src = src;
}

$("review-continue").addEventListener("click", async () => {
  const purchase = buying;
  if (!purchase?.reservation) return;
  $("pay-button").textContent = `Pay ${money(purchase.button.price)}`;
  showStep("step-pay");
  await loadSavedChoices();
  if (buying === purchase) focusFirstField();
});

function focusFirstField() {
  const first = [...$("step-pay").querySelectorAll("input")].find((input) => input.offsetParent !== null);
  first?.focus();
}

/** Fills the saved address and card choices; "new" shows the typed fields. */
async function loadSavedChoices() {
  let cards = [];
  let addresses = [];
  try {
    [cards, addresses] = await Promise.all([api("GET", "/v1/me/payment-methods"), api("GET", "/v1/me/addresses")]);
  } catch {
    // No saved choices: the typed fields are there.
  }
  fillChoices($("saved-addresses"), "address", addresses, (a) => `${a.name}, ${a.line1}, ${a.city} ${a.postal_code}, ${a.country}`, "A new address", $("new-address"));
  fillChoices($("saved-cards"), "card", cards, (c) => `${c.brand} ending ${c.last4}, expires ${String(c.exp_month).padStart(2, "0")}/${c.exp_year}`, "A new card", $("new-card"));
}

function fillChoices(box, name, items, describe, newLabel, newEntry) {
  box.replaceChildren();
  if (!items.length) {
    newEntry.hidden = false;
    return;
  }
  const options = [...items.map((item) => [item.id, describe(item)]), ["", newLabel]];
  options.forEach(([value, text], index) => {
    const input = el("input", { type: "radio", name, value, checked: index === 0 });
    input.addEventListener("change", () => { newEntry.hidden = value !== ""; });
    box.append(el("label", {}, input, text));
  });
  newEntry.hidden = true;
}

function chosen(name) {
  return document.querySelector(`input[name="${name}"]:checked`)?.value ?? "";
}

/** The checkout body from the form, or a message saying which field to fix. */
function readPayment() {
  const savedAddress = chosen("address");
  const savedCard = chosen("card");
  let shipping;
  if (savedAddress) {
    shipping = { saved: savedAddress };
  } else {
    const fields = { name: "ship-name", line1: "ship-line1", city: "ship-city", postal_code: "ship-postal", country: "ship-country" };
    shipping = {};
    for (const [key, id] of Object.entries(fields)) {
      const value = $(id).value.trim();
      if (!value) return { error: `Fill in ${$(id).labels[0].textContent}.`, field: id };
      shipping[key] = key === "country" ? value.toUpperCase() : value;
    }
  }
  let payment;
  if (savedCard) {
    payment = { saved: savedCard };
  } else {
    const number = $("card-number").value.replace(/[\s-]/g, "");
    if (!/^\d{12,19}$/.test(number)) return { error: "Type the card number: 12 to 19 digits.", field: "card-number" };
    const expiry = parseExpiry($("card-expiry").value);
    if (!expiry) return { error: "Type the expiry as MM/YY or MM/YYYY, like 12/30.", field: "card-expiry" };
    const cvc = $("card-cvc").value.trim();
    if (!/^\d{3,4}$/.test(cvc)) return { error: "Type the CVC: the 3 or 4 digits on your card.", field: "card-cvc" };
    const name = savedAddress ? (session?.name ?? "Cardholder") : shipping.name;
    payment = { number, exp_month: expiry.month, exp_year: expiry.year, cvc, name };
  }
  return {
    body: {
      shipping,
      payment,
      save: $("save-for-next-time").checked,
      shareCardWithSeller: $("share-card").checked,
    },
  };
}

$("step-pay").addEventListener("submit", async (event) => {
  event.preventDefault();
  const purchase = buying;
  if (!purchase?.reservation) return;
  const form = readPayment();
  if (form.error) {
    $("pay-error").textContent = form.error;
    $(form.field).focus();
    return;
  }
  $("pay-error").textContent = "";
  $("pay-button").disabled = true;
  $("pay-button").textContent = "Paying…";
  try {
    const order = await client.checkout({ reservation: purchase.reservation.id, idempotencyKey: purchase.payKey, ...form.body });
    if (buying !== purchase) return;
    confirmed(order);
  } catch (error) {
    if (buying !== purchase) return;
    if (error.code === "limit_exceeded" && Date.now() - (purchase.expiredAt ?? -Infinity) < 5_000) {
      // The hold that just expired on this clock may still count against the limit for a
      // moment: the server ends due holds in a sweep every 250 ms. Ask again shortly.
      await new Promise((resolve) => setTimeout(resolve, 300));
      if (buying === purchase) await takeHold();
      return;
    }
    if (error.code === "unauthorized") saveSession(null);
    if (RETRY_PAY.has(error.code)) {
      // The hold stays: fix the card (or wait out a hiccup) and pay again.
      $("pay-error").textContent = inWords(error);
      $("pay-error").scrollIntoView({ block: "nearest" });
    } else {
      clearInterval(countdownTimer);
      $("hold-line").hidden = true;
      purchase.reservation = null;
      fail(error, null);
    }
  } finally {
    $("pay-button").disabled = false;
    $("pay-button").textContent = `Pay ${money(purchase.button.price)}`;
  }
});

function confirmed(order) {
  clearInterval(countdownTimer);
  $("hold-line").hidden = true;
  buying.reservation = null;
  ordersSeen.add(order.id);
  $("done-order-id").textContent = order.id;
  $("done-total").textContent = money(order.total);
  $("done-payment").textContent = order.payment ? `${order.payment.brand} ending ${order.payment.last4}` : "";
  const ship = order.shipping;
  $("done-shipping").textContent = ship ? `${ship.name}, ${ship.line1}, ${ship.city} ${ship.postal_code}, ${ship.country}` : "";
  $("card-number").value = "";
  $("card-cvc").value = "";
  showStep("step-done");
  $("done-close").focus();
}

/** Closing the dialog before paying gives the hold back at once. */
$("buy-dialog").addEventListener("close", () => {
  clearInterval(countdownTimer);
  const purchase = buying;
  buying = null;
  if (purchase?.reservation) {
    client.release(purchase.reservation.id).then((reply) => setRemaining(purchase.product, reply.remaining)).catch(() => {});
  }
  purchase?.button && document.querySelector(`.buy[data-product="${CSS.escape(purchase.product)}"] .buy-button`)?.focus();
});
for (const button of document.querySelectorAll(".cancel-buy")) button.addEventListener("click", () => $("buy-dialog").close());
$("failed-close").addEventListener("click", () => $("buy-dialog").close());
$("done-close").addEventListener("click", () => $("buy-dialog").close());
$("done-orders").addEventListener("click", () => {
  $("buy-dialog").close();
  showView("orders-view");
});

// ---- orders and wallet ----

/** Orders this page confirmed itself: their push is not news. */
const ordersSeen = new Set();

client.on("order", (frame) => {
  if (!ordersSeen.has(frame.order.id)) notice(`Order ${frame.order.id} confirmed: ${frame.order.quantity} × ${products.get(frame.order.product)?.title ?? frame.order.product}, ${money(frame.order.total)}.`);
  ordersSeen.add(frame.order.id);
  if (!$("orders-view").hidden) loadOrders();
});

function showView(id) {
  for (const view of document.querySelectorAll(".view")) view.hidden = view.id !== id;
  for (const tab of document.querySelectorAll(".tab")) {
    if (tab.dataset.view === id) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  refreshView();
}
for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => showView(tab.dataset.view));

function refreshView() {
  if (!$("orders-view").hidden) loadOrders();
  if (!$("wallet-view").hidden) loadWallet();
}

function signedOutList(list, status, what) {
  list.replaceChildren();
  status.replaceChildren(`Sign in to see ${what}. `);
  const button = el("button", { type: "button", class: "secondary", text: "Sign in" });
  button.addEventListener("click", () => ensureSignedIn().then((ok) => ok && refreshView()));
  status.append(button);
}

async function loadOrders() {
  const list = $("orders");
  const status = $("orders-status");
  if (!session) return signedOutList(list, status, "your orders");
  status.textContent = "Loading…";
  // The server lists oldest first, a page at a time; the page shows newest first.
  const orders = [];
  try {
    let after = null;
    for (let page = 0; page < MAX_ORDER_PAGES; page += 1) {
      const batch = await api("GET", `/v1/me/orders?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      orders.push(...batch);
      if (batch.length < 1000) break;
      after = batch[batch.length - 1].id;
    }
  } catch (error) {
    status.textContent = inWords(error);
    return;
  }
  orders.reverse();
  list.replaceChildren(...orders.map((order) => el("li", { "data-order": order.id },
    el("div", {},
      el("div", { class: "buy-title", text: `${order.quantity} × ${products.get(order.product)?.title ?? order.product}` }),
      el("div", { class: "muted", text: `${new Date(order.created_at).toLocaleString()} · ${order.payment ? `${order.payment.brand} ending ${order.payment.last4}` : ""}` }),
      el("code", { text: order.id })),
    el("strong", { text: money(order.total) }))));
  status.textContent = orders.length ? `${orders.length} order${orders.length === 1 ? "" : "s"}, newest first` : "No orders yet.";
}

async function loadWallet() {
  const cards = $("cards");
  const addresses = $("addresses");
  const status = $("wallet-status");
  if (!session) {
    addresses.replaceChildren();
    return signedOutList(cards, status, "your saved cards and addresses");
  }
  status.textContent = "Loading…";
  try {
    const [savedCards, savedAddresses] = await Promise.all([api("GET", "/v1/me/payment-methods"), api("GET", "/v1/me/addresses")]);
    cards.replaceChildren(...savedCards.map((card) => walletItem(
      `${card.brand} ending ${card.last4}`, `Expires ${String(card.exp_month).padStart(2, "0")}/${card.exp_year}`,
      `/v1/me/payment-methods/${encodeURIComponent(card.id)}`)));
    addresses.replaceChildren(...savedAddresses.map((address) => walletItem(
      address.name, `${address.line1}, ${address.city} ${address.postal_code}, ${address.country}`,
      `/v1/me/addresses/${encodeURIComponent(address.id)}`)));
    if (!savedCards.length) cards.append(el("li", { class: "muted", text: "No saved cards." }));
    if (!savedAddresses.length) addresses.append(el("li", { class: "muted", text: "No saved addresses." }));
    status.textContent = "";
  } catch (error) {
    status.textContent = inWords(error);
  }
}

function walletItem(title, detail, path) {
  const remove = el("button", { type: "button", class: "secondary", text: "Remove", "aria-label": `Remove ${title}` });
  remove.addEventListener("click", async () => {
    remove.disabled = true;
    try {
      await api("DELETE", path);
      $("wallet-status").textContent = `Removed ${title}.`;
      await loadWallet();
      $("wallet-status").textContent = `Removed ${title}.`;
    } catch (error) {
      remove.disabled = false;
      $("wallet-status").textContent = inWords(error);
    }
  });
  return el("li", {}, el("div", {}, el("div", { class: "buy-title", text: title }), el("div", { class: "muted", text: detail })), remove);
}

// ---- start ----

saveSession(session);
syncTimelineForm();
showTimeline({ timeline: "buyable" });
