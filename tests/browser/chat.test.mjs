// The web client at `/`, driven in headless Chromium by two people in two browser contexts,
// against real servers: one on SQLite, then two instances on PostgreSQL + Redis with each
// browser on an instance of its own.

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, copyFileSync } from "node:fs";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

import { sqliteStack, postgresRedisStack, postgresRedisReachable } from "./servers.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const CI = process.env.CI === "true";
const OUT = join(import.meta.dirname, "out");
const PASSWORD = "Passw0rd!";
const HISTORY = 60; // messages filled in over REST: more than one page of 50

let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    if (CI) throw new Error(`Chromium not found at ${CHROMIUM}`);
    return;
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  mkdirSync(OUT, { recursive: true });
});

after(async () => {
  await browser?.close();
});

/** Retries `check` until it passes or `timeout` ms have gone by; then its last failure. */
async function eventually(check, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

function unique(prefix) {
  return `${prefix}${randomBytes(3).toString("hex")}`;
}

/** A browser context whose page records its WebSockets and fails on any script error. */
async function person(baseUrl, name, viewport = { width: 1100, height: 720 }) {
  const context = await browser.newContext({ viewport });
  await context.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  const page = await context.newPage();
  // Every WebSocket the page opens, with the frames it sent and received.
  const sockets = [];
  page.on("websocket", (socket) => {
    const entry = { sent: [], received: [] };
    sockets.push(entry);
    const parse = (frame) => {
      try {
        return JSON.parse(frame.payload);
      } catch {
        return null;
      }
    };
    socket.on("framesent", (frame) => entry.sent.push(parse(frame)));
    socket.on("framereceived", (frame) => entry.received.push(parse(frame)));
  });
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() === "error" && /Content Security Policy|Refused to/i.test(message.text())) {
      problems.push(`console: ${message.text()}`);
    }
  });
  await page.goto(baseUrl);
  const username = unique(name);
  return { context, page, sockets, problems, username, email: `${username}@example.com`, baseUrl };
}

const id = (testid) => `[data-testid="${testid}"]`;

async function register(who) {
  const { page } = who;
  await page.fill(id("email"), who.email);
  await page.fill(id("username"), who.username);
  await page.fill(id("password"), PASSWORD);
  await page.click(id("register"));
  await page.locator(id("logout")).waitFor();
}

/** The rendered messages, as [seq, content] in page order. */
async function messages(page) {
  return page.$$eval('[data-testid="message"]', (items) =>
    items.map((item) => [Number(item.dataset.seq), item.querySelector(".content").textContent]),
  );
}

function assertAscendingOnce(list) {
  const seqs = list.map(([seq]) => seq);
  for (let i = 1; i < seqs.length; i += 1) assert.ok(seqs[i] > seqs[i - 1], `seqs out of order: ${seqs}`);
}

async function rest(baseUrl, method, path, token, body) {
  const response = await fetch(`${baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.ok(response.status < 300, `${method} ${path}: ${response.status} ${await response.clone().text()}`);
  return response.status === 204 ? null : response.json();
}

async function login(baseUrl, email) {
  const response = await fetch(`${baseUrl}/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email, password: PASSWORD }),
  });
  assert.equal(response.status, 200);
  return (await response.json()).access_token;
}

async function conversation(baseA, baseB, { screenshot }) {
  const ada = await person(baseA, "ada");
  const bob = await person(baseB, "bob");
  try {
    await register(ada);

    // A clear message for an error: bob tries ada's email first.
    await bob.page.fill(id("email"), ada.email);
    await bob.page.fill(id("username"), bob.username);
    await bob.page.fill(id("password"), PASSWORD);
    await bob.page.click(id("register"));
    await eventually(async () => assert.match(await bob.page.textContent(id("error")), /exists already/));
    await register(bob);

    // ada creates a room; bob finds it in the directory and joins.
    const room = unique("lobby-");
    await ada.page.fill(id("room-name"), room);
    await ada.page.click(id("create-room"));
    await eventually(async () => assert.equal(await ada.page.textContent("#room-title"), room));
    await bob.page.fill(id("directory-search"), room.slice(0, 8));
    await bob.page.click(`${id("room-item")}[data-room-name="${room}"]`);
    await bob.page.click(id("join-room"));
    await bob.page.locator(id("leave-room")).waitFor();

    // Both see each other online.
    for (const [viewer, other] of [
      [ada, bob],
      [bob, ada],
    ]) {
      await viewer.page
        .locator(`${id("member")}[data-username="${other.username}"][data-online="true"]`)
        .waitFor();
    }

    // Messages, sent with Enter, appear live on both sides in order.
    await ada.page.fill(id("message-input"), "hello bob");
    await ada.page.press(id("message-input"), "Enter");
    await eventually(async () => assert.deepEqual(await messages(bob.page), [[1, "hello bob"]]));
    await bob.page.fill(id("message-input"), "hi ada <b>not bold</b>");
    await bob.page.press(id("message-input"), "Enter");
    await ada.page.fill(id("message-input"), "a typo here");
    await ada.page.click(id("send"));
    const expected = [
      [1, "hello bob"],
      [2, "hi ada <b>not bold</b>"],
      [3, "a typo here"],
    ];
    for (const who of [ada, bob]) {
      await eventually(async () => assert.deepEqual(await messages(who.page), expected));
    }
    // Text stays text: no element was made from the message.
    assert.equal(await ada.page.locator(`${id("message")} b`).count(), 0);

    // Typing shows on the other side. (The server passes on one typing frame per 2 s per user
    // and room, and bob's page sent one as he wrote his message.)
    await new Promise((r) => setTimeout(r, 2100));
    await bob.page.type(id("message-input"), "thinking", { delay: 20 });
    await eventually(async () => assert.match(await ada.page.textContent(id("typing")), /is typing/));
    assert.match(await ada.page.textContent(id("typing")), new RegExp(bob.username));
    await bob.page.fill(id("message-input"), "");

    // ada edits one of her messages and deletes another; bob sees both live.
    await ada.page.click(`${id("message")}[data-seq="3"] ${id("edit-message")}`);
    await ada.page.fill(id("edit-input"), "no typo now");
    await ada.page.press(id("edit-input"), "Enter");
    await eventually(async () => {
      const edited = bob.page.locator(`${id("message")}[data-seq="3"]`);
      assert.equal(await edited.locator(".content").textContent(), "no typo now");
      assert.equal(await edited.locator(".edited").count(), 1);
    });
    await ada.page.click(`${id("message")}[data-seq="1"] ${id("delete-message")}`);
    for (const who of [ada, bob]) {
      await eventually(async () =>
        assert.deepEqual(await messages(who.page), [
          [2, "hi ada <b>not bold</b>"],
          [3, "no typo now"],
        ]),
      );
    }

    if (screenshot) await ada.page.screenshot({ path: join(OUT, "chat.png") });

    // History: more than a page, filled in over REST, then read back by scrolling up.
    const token = await login(baseB, bob.email);
    const roomId = await bob.page.getAttribute(`${id("room-item")}[data-room-name="${room}"]`, "data-room-id");
    for (let i = 1; i <= HISTORY; i += 1) {
      await rest(baseB, "POST", "/chat/message", token, {
        roomId,
        content: `history ${i}`,
        clientMessageId: `h-${i}`,
      });
    }
    const last = 3 + HISTORY;
    await eventually(async () => assert.equal((await messages(ada.page)).at(-1)[0], last));
    await ada.page.reload();
    await ada.page.click(`${id("room-item")}[data-room-name="${room}"]`);
    await eventually(async () => assert.equal((await messages(ada.page)).length, 50));
    assert.deepEqual((await messages(ada.page))[0], [last - 49, `history ${HISTORY - 49}`]);
    await eventually(async () => {
      await ada.page.locator(id("message")).first().scrollIntoViewIfNeeded();
      await ada.page.$eval("#messages", (list) => list.scrollTo(0, 0));
      const all = await messages(ada.page);
      assert.equal(all.length, last - 1); // seq 1 was deleted
      assert.deepEqual(all[0], [2, "hi ada <b>not bold</b>"]);
      assertAscendingOnce(all);
    });

    // bob's connection drops just after he sent a message, before its reply can arrive; while
    // it is down ada writes, and bob writes too (queued). Once back, bob's page resumes from
    // the last seq it saw, sends both of his again under their clientMessageIds, and
    // everything shows exactly once, in order, on both sides.
    await eventually(async () => assert.equal((await messages(bob.page)).at(-1)[0], last));
    const socketsBefore = bob.sockets.length;
    await bob.context.route("**/ws/ticket", (route) => route.abort("internetdisconnected"));
    await bob.page.evaluate(() => {
      const input = document.querySelector('[data-testid="message-input"]');
      input.value = "cut off before its reply";
      input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true }));
      for (const socket of window.__sockets) socket.close();
    });
    await bob.context.setOffline(true);
    await eventually(async () => assert.notEqual(await bob.page.getAttribute("#connection", "data-state"), "online"));
    const away = ["while you were away 1", "while you were away 2", "while you were away 3"];
    for (const text of away) {
      await ada.page.fill(id("message-input"), text);
      await ada.page.press(id("message-input"), "Enter");
    }
    await bob.page.fill(id("message-input"), "written offline");
    await bob.page.press(id("message-input"), "Enter");
    await eventually(async () => assert.equal(await bob.page.locator(id("pending-message")).count(), 2));
    await new Promise((r) => setTimeout(r, 1500));
    await bob.context.unroute("**/ws/ticket");
    await bob.context.setOffline(false);
    await eventually(async () => assert.equal(await bob.page.getAttribute("#connection", "data-state"), "online"), 20_000);

    const fresh = ["cut off before its reply", ...away, "written offline"];
    let settled;
    for (const who of [ada, bob]) {
      await eventually(async () => {
        const all = await messages(who.page);
        for (const text of fresh) {
          assert.equal(all.filter(([, t]) => t === text).length, 1, `${who.username} sees "${text}" once`);
        }
        assertAscendingOnce(all);
        assert.deepEqual(
          all.slice(-5).map(([seq]) => seq),
          [1, 2, 3, 4, 5].map((n) => last + n),
        );
        settled = all;
      });
    }
    assert.deepEqual(await messages(bob.page), await messages(ada.page));
    assert.deepEqual(await messages(ada.page), settled);
    assert.equal(await bob.page.locator(id("pending-message")).count(), 0);
    // The server stored each once.
    const stored = await rest(baseB, "GET", `/chat/messages?roomId=${roomId}&after=${last}`, token);
    assert.deepEqual(
      stored.messages.map((m) => m.content).sort(),
      [...fresh].sort(),
    );
    // What bob's page said on its new connection: join from the last seq it had, and the cut-off
    // send again under the clientMessageId it first had.
    const cutOff = bob.sockets
      .slice(0, socketsBefore)
      .flatMap((socket) => socket.sent)
      .find((frame) => frame?.type === "send" && frame.content === "cut off before its reply");
    assert.ok(cutOff, "the cut-off send left on the old connection");
    const resumed = bob.sockets.at(-1);
    assert.ok(bob.sockets.length > socketsBefore);
    assert.ok(
      resumed.sent.some((frame) => frame?.type === "join" && frame.roomId === roomId && frame.sinceSeq === last),
      `join with sinceSeq ${last}: ${JSON.stringify(resumed.sent)}`,
    );
    assert.ok(
      resumed.sent.some((frame) => frame?.type === "send" && frame.clientMessageId === cutOff.clientMessageId),
    );

    // bob leaves the room; ada sees him go from the member list.
    await bob.page.click(id("leave-room"));
    await bob.page.locator(id("join-room")).waitFor({ state: "hidden" }).catch(() => {});
    await eventually(async () =>
      assert.equal(await ada.page.locator(`${id("member")}[data-username="${bob.username}"]`).count(), 0),
    );

    // bob's session ends elsewhere: his page closes on 4001 and returns to the login form.
    await rest(baseB, "POST", "/auth/logout", await bob.page.evaluate(() => sessionStorage.getItem("convo.token")));
    await bob.page.locator(id("login")).waitFor();
    await eventually(async () => assert.match(await bob.page.textContent(id("error")), /session has ended/));

    // ada logs out with the button.
    await ada.page.click(id("logout"));
    await ada.page.locator(id("login")).waitFor();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await ada.page.locator(id("error")).isVisible(), false, "no error on a logout of one's own");

    assert.deepEqual([...ada.problems, ...bob.problems], []);
  } finally {
    await ada.context.close();
    await bob.context.close();
  }
}

test("the page is served with its types, policy and cache headers", { skip: !existsSync(CHROMIUM) && !CI }, async () => {
  const stack = await sqliteStack();
  try {
    const base = stack.instances[0].baseUrl;
    const page = await fetch(`${base}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get("content-type"), /^text\/html/);
    assert.match(page.headers.get("content-security-policy"), /script-src 'self'/);
    assert.equal(page.headers.get("cache-control"), "no-cache");
    const etag = page.headers.get("etag");
    assert.ok(etag);
    const again = await fetch(`${base}/`, { headers: { "if-none-match": etag } });
    assert.equal(again.status, 304);
    assert.match((await fetch(`${base}/app.js`)).headers.get("content-type"), /^text\/javascript/);
    assert.match((await fetch(`${base}/style.css`)).headers.get("content-type"), /^text\/css/);
    assert.equal((await fetch(`${base}/favicon.ico`)).status, 200);
    const post = await fetch(`${base}/`, { method: "POST" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
  } finally {
    await stack.stop();
  }
});

test("two people chat on one SQLite server", { skip: !existsSync(CHROMIUM) && !CI }, async () => {
  const stack = await sqliteStack();
  try {
    const base = stack.instances[0].baseUrl;
    await conversation(base, base, { screenshot: true });
    if (process.env.UPDATE_SCREENSHOT) copyFileSync(join(OUT, "chat.png"), join(import.meta.dirname, "screenshot.png"));
  } catch (error) {
    console.error(stack.instances[0].log());
    throw error;
  } finally {
    await stack.stop();
  }
});

test("a send over the rate limit is refused with a clear message and its text kept", { skip: !existsSync(CHROMIUM) && !CI }, async () => {
  const stack = await sqliteStack({ RATE_LIMIT_POINTS: "2", RATE_LIMIT_DURATION: "60" });
  const cy = await person(stack.instances[0].baseUrl, "cy");
  try {
    await register(cy);
    await cy.page.fill(id("room-name"), unique("busy-"));
    await cy.page.click(id("create-room"));
    await cy.page.locator(id("message-input")).waitFor();
    for (const text of ["one", "two", "three"]) {
      await cy.page.fill(id("message-input"), text);
      await cy.page.press(id("message-input"), "Enter");
    }
    await eventually(async () => assert.match(await cy.page.textContent(id("error")), /sending too fast\. Try again in \d+ s/));
    assert.equal(await cy.page.inputValue(id("message-input")), "three");
    assert.deepEqual(
      (await messages(cy.page)).map(([, text]) => text),
      ["one", "two"],
    );
    assert.equal(await cy.page.locator(id("pending-message")).count(), 0);
    assert.deepEqual(cy.problems, []);
  } finally {
    await cy.context.close();
    await stack.stop();
  }
});

test("the page works at phone width", { skip: !existsSync(CHROMIUM) && !CI }, async () => {
  const stack = await sqliteStack();
  const width = 390;
  const dee = await person(stack.instances[0].baseUrl, "dee", { width, height: 800 });
  try {
    const fits = async (selector) => {
      const box = await dee.page.locator(selector).boundingBox();
      assert.ok(box && box.x >= 0 && box.x + box.width <= width, `${selector} within the screen: ${JSON.stringify(box)}`);
    };
    await fits(id("register"));
    await register(dee);
    // With no room open, the rooms take the screen.
    await fits(id("directory-search"));
    const room = unique("pocket-");
    await dee.page.fill(id("room-name"), room);
    await dee.page.click(id("create-room"));
    // With a room open, it takes the screen, and the rooms come back with the menu button.
    await dee.page.fill(id("message-input"), "a long line from a small screen that has to wrap over several lines");
    await dee.page.press(id("message-input"), "Enter");
    await dee.page.locator(id("message")).waitFor();
    for (const selector of [id("message"), id("message-input"), id("send"), id("logout")]) await fits(selector);
    assert.equal(await dee.page.locator(id("directory-search")).isVisible(), false);
    await dee.page.click("#toggle-rooms");
    await fits(`${id("room-item")}[data-room-name="${room}"]`);
    assert.deepEqual(dee.problems, []);
  } finally {
    await dee.context.close();
    await stack.stop();
  }
});

test("two people chat across two instances on PostgreSQL + Redis", { skip: !existsSync(CHROMIUM) && !CI }, async (t) => {
  if (!postgresRedisReachable()) {
    if (CI) throw new Error("PostgreSQL or Redis is not reachable");
    t.skip("PostgreSQL or Redis is not reachable");
    return;
  }
  const stack = await postgresRedisStack(2);
  try {
    await conversation(stack.instances[0].baseUrl, stack.instances[1].baseUrl, { screenshot: false });
  } catch (error) {
    for (const instance of stack.instances) console.error(instance.log());
    throw error;
  } finally {
    await stack.stop();
  }
});
