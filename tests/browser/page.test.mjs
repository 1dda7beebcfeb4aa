// The page at / in a real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core), against the real server binary started for each test. Screenshots go to
// target/browser-screenshots/. Without chromium the tests are skipped, loudly, except under
// CI=true, where that fails.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { ingest, makeDataDir, payAs, reserveAs, startServer, token, tweet } from "./server.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.BUYLINE_CHROMIUM ?? "/usr/bin/chromium";
const SCREENSHOTS = path.resolve(here, "../../target/browser-screenshots");
/** How long a test waits for something it expects on the page. */
const WAIT_MS = 15_000;

const haveChromium = existsSync(CHROMIUM);
if (!haveChromium) {
  const message = `${CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium`;
  if (process.env.CI === "true") throw new Error(`CI=true and ${message}`);
  console.error(`\n*** SKIPPING the browser tests: ${message} ***\n`);
}

let browser;

before(async () => {
  if (!haveChromium) return;
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM });
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
});

/**
 * Runs `body` with a server and a fresh page (its own storage) at `viewport`, and fails the test
 * on any console error or uncaught exception the page had, except those `expectedErrors` matches.
 */
async function withPage(name, body, { viewport = { width: 1024, height: 900 }, expectedErrors = null, server: given } = {}) {
  const server = given ?? (await startServer());
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const errors = [];
  page.on("console", (message) => {
    if (message.type() === "error" && !(expectedErrors && expectedErrors.test(message.text()))) errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
  try {
    await page.goto(`${server.url}/`);
    await page.locator("#connection[data-state=live]").waitFor();
    await body({ page, server });
    assert.deepEqual(errors, [], "the page logged console errors");
  } catch (error) {
    await page.screenshot({ path: path.join(SCREENSHOTS, `${name}-failed.png`), fullPage: true }).catch(() => {});
    throw error;
  } finally {
    await context.close();
    if (!given) await server.stop();
  }
}

const shot = (page, name, options = {}) => page.screenshot({ path: path.join(SCREENSHOTS, `${name}.png`), ...options });

/** The buy box of the first tweet linking `product`. */
const buyBox = (page, product) => page.locator(`.buy[data-product="${product}"]`).first();

/** Signs in through the page's dialog (opened by a Buy tap). */
async function signInAs(page, name) {
  await page.locator("#signin-dialog[open]").waitFor();
  await page.fill("#signin-name", name);
  await page.press("#signin-name", "Enter");
}

/** Fills the new address and card fields. */
async function fillShippingAndCard(page, { number, expiry }) {
  await page.getByLabel("Name", { exact: true }).fill("Ada Lovelace");
  await page.getByLabel("Address", { exact: true }).fill("12 St James's Square");
  await page.getByLabel("City", { exact: true }).fill("London");
  await page.getByLabel("Postal code", { exact: true }).fill("SW1Y 4JH");
  await page.getByLabel("Country", { exact: true }).fill("gb");
  await fillCard(page, { number, expiry });
}

async function fillCard(page, { number, expiry }) {
  await page.getByLabel("Card number", { exact: true }).fill(number);
  await page.getByLabel("Expiry", { exact: true }).fill(expiry);
  await page.getByLabel("CVC", { exact: true }).fill("123");
}

/** Taps Buy on `product`, signs in as `buyer` if asked, and continues from the review. */
async function buyUpToPayment(page, product, buyer) {
  await buyBox(page, product).getByRole("button").click();
  if (buyer) await signInAs(page, buyer);
  await page.locator("#step-review:not([hidden])").waitFor();
  await page.getByRole("button", { name: "Continue to shipping and payment" }).click();
  await page.locator("#step-pay:not([hidden])").waitFor();
}

/** The page's customer token, for checking what the server has for it. */
const pageToken = (page) => page.evaluate(() => JSON.parse(localStorage.getItem("buyline-page-session")).token);

describe("the page in Chromium", { skip: !haveChromium && "chromium is missing" }, () => {
  test("partner tweets appear with their buy buttons, on every timeline", async () => {
    await withPage("timelines", async ({ page, server }) => {
      await ingest(server, [
        tweet(1, "Back in brass", { product: "acme-lamp", hashtags: ["lamps"] }),
        tweet(2, "Lovely weather today", { author: "someone", hashtags: ["lamps"] }),
      ]);
      const box = buyBox(page, "acme-lamp");
      await box.waitFor();
      assert.match(await box.innerText(), /Brass Desk Lamp/);
      assert.match(await box.innerText(), /\$45\.00 · Acme Goods/);
      assert.match(await box.innerText(), /Limited edition/);
      assert.match(await box.locator(".left").innerText(), /^50 left$/);
      assert.equal(await page.getByRole("button", { name: "Buy Brass Desk Lamp" }).count(), 1);
      // `buyable` shows only the tweet with a button.
      assert.equal(await page.locator(".tweet").count(), 1);
      await shot(page, "timeline-buyable");

      const choose = async (kind, argument, expected) => {
        await page.selectOption("#timeline-kind", kind);
        if (argument !== null) await page.getByLabel(/Screen name|Hashtag|Accounts you follow/).fill(argument);
        await page.getByRole("button", { name: "Show" }).click();
        await page.locator("#timeline-status", { hasText: `on ${expected}` }).waitFor();
      };
      // Each timeline gets the next tweets that match it (a fresh subscription starts now).
      await choose("all", null, "all");
      await ingest(server, [tweet(3, "Just a tweet", { author: "someone" })]);
      await page.locator(".tweet", { hasText: "Just a tweet" }).waitFor();
      await choose("user", "@someone", "user:someone");
      await ingest(server, [tweet(4, "From acme", { product: "acme-mug" }), tweet(5, "From someone", { author: "someone" })]);
      await page.locator(".tweet", { hasText: "From someone" }).waitFor();
      assert.equal(await page.locator(".tweet", { hasText: "From acme" }).count(), 0);
      await choose("tag", "#Lamps", "tag:Lamps");
      await ingest(server, [tweet(6, "Tagged", { author: "other", hashtags: ["lamps"] }), tweet(7, "Untagged", { author: "other" })]);
      await page.locator(".tweet", { hasText: "Tagged" }).waitFor();
      assert.equal(await page.locator(".tweet", { hasText: "Untagged" }).count(), 0);
      await choose("home", "AcmeGoods, @friend", "home");
      await ingest(server, [tweet(8, "Friend here", { author: "friend" }), tweet(9, "Stranger here", { author: "stranger" }), tweet(10, "Mug again", { product: "acme-mug" })]);
      await page.locator(".tweet", { hasText: "Mug again" }).waitFor();
      assert.equal(await page.locator(".tweet", { hasText: "Friend here" }).count(), 1);
      assert.equal(await page.locator(".tweet", { hasText: "Stranger here" }).count(), 0);
      // On a timeline other than buyable the page follows the shown product's stock itself.
      const buyer = await token(server, "customer", "other-buyer");
      const held = await reserveAs(server, buyer, "acme-mug", 1);
      assert.equal(held.status, 201);
      await buyBox(page, "acme-mug").locator(".left", { hasText: "2 left" }).waitFor();
    });
  });

  test("N left changes when another client reserves", async () => {
    await withPage("n-left", async ({ page, server }) => {
      await ingest(server, [tweet(1, "Brass", { product: "acme-lamp" })]);
      await buyBox(page, "acme-lamp").locator(".left", { hasText: "50 left" }).waitFor();
      const other = await token(server, "customer", "someone-else");
      const held = await reserveAs(server, other, "acme-lamp", 2);
      assert.equal(held.status, 201, JSON.stringify(held.body));
      await buyBox(page, "acme-lamp").locator(".left", { hasText: "48 left" }).waitFor();
    });
  });

  test("Buy opens the review, reachable with the keyboard, and Escape gives the hold back", async () => {
    await withPage("keyboard", async ({ page, server }) => {
      await ingest(server, [tweet(1, "Brass", { product: "acme-lamp" })]);
      const buy = page.getByRole("button", { name: "Buy Brass Desk Lamp" });
      await buy.waitFor();
      // Tab from the top of the page until the Buy button has the focus.
      let reached = false;
      for (let presses = 0; presses < 30 && !reached; presses += 1) {
        await page.keyboard.press("Tab");
        reached = await buy.evaluate((button) => document.activeElement === button);
      }
      assert.ok(reached, "Tab never reached the Buy button");
      await page.keyboard.press("Enter");
      await page.locator("#signin-dialog[open]").waitFor();
      await page.keyboard.type("keyboard-buyer");
      await page.keyboard.press("Enter");
      const review = page.locator("#step-review:not([hidden])");
      await review.waitFor();
      assert.equal(await page.locator("#buy-dialog").evaluate((dialog) => dialog instanceof HTMLDialogElement && dialog.open), true);
      assert.equal(await page.locator("#buy-title").innerText(), "Brass Desk Lamp");
      await page.locator("#review-description", { hasText: "heavy brass lamp" }).waitFor();
      assert.equal(await page.locator("#review-price").innerText(), "$45.00");
      assert.equal(await page.locator("#review-remaining").innerText(), "49 left");
      assert.equal(await page.locator("#review-image").getAttribute("alt"), "Brass Desk Lamp, product photo");
      assert.ok(await page.locator("#review-image").evaluate((image) => image.complete && image.naturalWidth > 0), "the product image loads");
      assert.match(await page.locator("#hold-countdown").innerText(), /^[45]:\d\d$/);
      // The focus is on the way on, so Enter continues.
      assert.equal(await page.evaluate(() => document.activeElement.id), "review-continue");
      await shot(page, "review");
      await page.keyboard.press("Escape");
      await page.locator("#buy-dialog[open]").waitFor({ state: "detached" });
      await buyBox(page, "acme-lamp").locator(".left", { hasText: "50 left" }).waitFor();
    });
  });

  test("a declined card shows the decline, another card then pays, and the order is under Orders", async () => {
    await withPage("checkout", async ({ page, server }) => {
      await ingest(server, [tweet(1, "Brass", { product: "acme-lamp" })]);
      await buyBox(page, "acme-lamp").waitFor();
      await buyUpToPayment(page, "acme-lamp", "ada");
      await fillShippingAndCard(page, { number: "4000 0000 0000 0002", expiry: "12/30" });
      await page.getByRole("button", { name: "Pay $45.00" }).click();
      const error = page.locator("#pay-error");
      await error.filter({ hasText: "declined" }).waitFor();
      assert.equal(await error.innerText(), "Your card was declined. Try another card.");
      assert.match(await page.locator("#hold-countdown").innerText(), /^[45]:\d\d$/, "the hold lasts");
      await shot(page, "checkout-declined");

      await fillCard(page, { number: "4242 4242 4242 4242", expiry: "12 / 2030" });
      await page.getByRole("button", { name: "Pay $45.00" }).click();
      await page.locator("#step-done:not([hidden])").waitFor();
      const orderId = await page.locator("#done-order-id").innerText();
      assert.match(orderId, /^ord_[0-9a-f]+$/);
      assert.equal(await page.locator("#done-payment").innerText(), "visa ending 4242");
      await shot(page, "confirmation");

      await page.getByRole("button", { name: "See your orders" }).click();
      await page.locator(`#orders li[data-order="${orderId}"]`).waitFor();
      assert.match(await page.locator(`#orders li[data-order="${orderId}"]`).innerText(), /1 × Brass Desk Lamp[\s\S]*\$45\.00/);

      // Again, with the card and address saved the first time: the newest order comes first.
      await page.getByRole("button", { name: "Timeline" }).click();
      await buyUpToPayment(page, "acme-lamp", null);
      assert.equal(await page.getByRole("radio", { name: /visa ending 4242, expires 12\/2030/ }).isChecked(), true);
      assert.equal(await page.getByRole("radio", { name: /Ada Lovelace, 12 St James's Square/ }).isChecked(), true);
      assert.equal(await page.locator("#new-card").isHidden(), true);
      await page.getByRole("button", { name: "Pay $45.00" }).click();
      await page.locator("#step-done:not([hidden])").waitFor();
      const secondId = await page.locator("#done-order-id").innerText();
      await page.getByRole("button", { name: "See your orders" }).click();
      await page.locator(`#orders li[data-order="${secondId}"]`).waitFor();
      const listed = await page.locator("#orders li").evaluateAll((items) => items.map((item) => item.dataset.order));
      assert.deepEqual(listed, [secondId, orderId]);
      await shot(page, "orders");
    });
  });

  test("a saved card can be removed, and so can a saved address", async () => {
    await withPage("wallet", async ({ page, server }) => {
      await ingest(server, [tweet(1, "Brass", { product: "acme-lamp" })]);
      await buyBox(page, "acme-lamp").waitFor();
      await buyUpToPayment(page, "acme-lamp", "grace");
      await fillShippingAndCard(page, { number: "5555 5555 5555 4444", expiry: "03/2031" });
      await page.getByRole("button", { name: "Pay $45.00" }).click();
      await page.locator("#step-done:not([hidden])").waitFor();
      await page.getByRole("button", { name: "Done" }).click();

      await page.getByRole("button", { name: "Wallet" }).click();
      const remove = page.getByRole("button", { name: "Remove mastercard ending 4444" });
      await remove.waitFor();
      assert.match(await page.locator("#cards").innerText(), /Expires 03\/2031/);
      await shot(page, "wallet");
      await remove.click();
      await page.locator("#wallet-status", { hasText: "Removed mastercard ending 4444." }).waitFor();
      await page.locator("#cards", { hasText: "No saved cards." }).waitFor();
      await page.getByRole("button", { name: "Remove Ada Lovelace" }).click();
      await page.locator("#addresses", { hasText: "No saved addresses." }).waitFor();

      const headers = { authorization: `Bearer ${await pageToken(page)}` };
      const cards = await (await fetch(`${server.url}/v1/me/payment-methods`, { headers })).json();
      const addresses = await (await fetch(`${server.url}/v1/me/addresses`, { headers })).json();
      assert.deepEqual([cards, addresses], [[], []], "the server forgot them too");
    });
  });

  test("an expired hold says so in words and offers a new one; a limit reached says so too", async () => {
    await withPage("hold-expired", async ({ page, server }) => {
      await ingest(server, [tweet(1, "Pins", { product: "acme-pin" })]);
      await buyBox(page, "acme-pin").waitFor();
      await buyUpToPayment(page, "acme-pin", "pin-buyer");
      // The pin's holds last 3 s.
      await page.locator("#failed-message", { hasText: "Your hold expired" }).waitFor();
      assert.equal(await page.locator("#failed-message").innerText(), "Your hold expired, and the item went back on sale. You were not charged.");
      await page.getByRole("button", { name: "Take a new hold" }).click();
      await page.locator("#step-review:not([hidden])").waitFor();
      await page.getByRole("button", { name: "Continue to shipping and payment" }).click();
      await fillShippingAndCard(page, { number: "4242424242424242", expiry: "1/31" });
      await page.getByRole("button", { name: "Pay $5.00" }).click();
      await page.locator("#step-done:not([hidden])").waitFor();
      await page.getByRole("button", { name: "Done" }).click();

      // One a customer: a second Buy is refused, in words, with nothing to retry.
      await buyBox(page, "acme-pin").getByRole("button").click();
      await page.locator("#failed-message", { hasText: "limit" }).waitFor();
      assert.equal(await page.locator("#failed-message").innerText(), "You have reached this product's limit per customer.");
      assert.equal(await page.getByRole("button", { name: "Try again" }).isHidden(), true);
      await shot(page, "limit-reached");
    });
  });

  test("a product sold out by other buyers shows Sold out, disabled", async () => {
    await withPage("sold-out", async ({ page, server }) => {
      await ingest(server, [tweet(1, "Three mugs", { product: "acme-mug" })]);
      await buyBox(page, "acme-mug").locator(".left", { hasText: "3 left" }).waitFor();
      const first = await token(server, "customer", "first-buyer");
      const second = await token(server, "customer", "second-buyer");
      const hold = await reserveAs(server, first, "acme-mug", 2);
      assert.equal(hold.status, 201, JSON.stringify(hold.body));
      assert.equal((await payAs(server, first, hold.body.id ?? hold.body.reservation?.id)).status, 201);
      const last = await reserveAs(server, second, "acme-mug", 1);
      assert.equal(last.status, 201, JSON.stringify(last.body));
      const button = page.getByRole("button", { name: "Enamel Camp Mug: sold out" });
      await button.waitFor();
      assert.equal(await button.innerText(), "Sold out");
      assert.equal(await button.isDisabled(), true);
      await shot(page, "sold-out");
    });
  });

  test("the page survives a server restart on the same port and shows new tweets without a reload", async () => {
    const data = makeDataDir();
    let server = await startServer({ dataDir: data.dir });
    try {
      // While the server is down, Chromium logs each refused WebSocket: expected here.
      await withPage("restart", async ({ page }) => {
        await page.evaluate(() => { window.notReloaded = true; });
        await ingest(server, [tweet(1, "Before the restart", { product: "acme-lamp" })]);
        await page.locator(".tweet", { hasText: "Before the restart" }).waitFor();
        await server.stop({ kill: true });
        await page.locator("#connection[data-state=reconnecting]").waitFor();
        assert.equal(await page.locator("#connection").innerText(), "Reconnecting…");
        server = await startServer({ dataDir: data.dir, listen: server.addr });
        await page.locator("#connection[data-state=live]").waitFor();
        // History is not kept across a restart: the resume with `since` is told what it missed.
        await page.locator(".notice", { hasText: "missed" }).waitFor();
        await ingest(server, [tweet(2, "After the restart", { product: "acme-lamp" })]);
        await page.locator(".tweet", { hasText: "After the restart" }).waitFor();
        assert.equal(await page.evaluate(() => window.notReloaded), true);
        assert.equal(await page.locator(".tweet", { hasText: "Before the restart" }).count(), 1);
        await shot(page, "after-restart");
      }, { server: { get url() { return server.url; } }, expectedErrors: /WebSocket connection to .* failed/ });
    } finally {
      await server.stop();
      data.remove();
    }
  });

  test("a phone-sized viewport does not scroll sideways, long URLs and checkout included", async () => {
    await withPage("phone", async ({ page, server }) => {
      const longUrl = `https://example.com/${"averyveryverylongpathsegment".repeat(8)}?utm_source=${"x".repeat(60)}`;
      await ingest(server, [
        tweet(1, `Read this ${longUrl}`, { author: "someone" }),
        tweet(2, `The lamp, and more at ${longUrl}`, { product: "acme-lamp" }),
      ]);
      await buyBox(page, "acme-lamp").waitFor();
      const sideways = () => page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
      assert.equal(await sideways(), 0);
      await shot(page, "phone-timeline", { fullPage: true });
      await buyUpToPayment(page, "acme-lamp", "phone-buyer");
      assert.equal(await sideways(), 0);
      assert.equal(await page.locator("#buy-dialog").evaluate((dialog) => dialog.scrollWidth - dialog.clientWidth), 0);
      await shot(page, "phone-checkout");
    }, { viewport: { width: 375, height: 812 } });
  });
});
