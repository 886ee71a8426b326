// test/ui/ui.test.ts — the web UI in a real browser (Debian's chromium) against a real node with real actors; screenshots in test-results/ui/.
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as orderModule from "../../examples/order.js";
import { createAdminServer, type AdminServer } from "../../node/admin/server.js";
import { createClient, type Client } from "../../node/client/index.js";
import { lazyIndexView, startProjector, type IndexViewSource, type Projector } from "../../node/index-projector/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { connectNats } from "../../protocol/connect.js";
import { shipment, ticker } from "../admin/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";
import { hasChromium, launchBrowser, screenshot, type Browser } from "./browser.js";

const built = existsSync(fileURLToPath(new URL("../../dist/node/admin/ui/app.js", import.meta.url)));

let nats: NatsServer;
let node: FlowmetalNode;
let nc: NatsConnection;
let fm: Client;
let projector: Projector;
let index: IndexViewSource;
let admin: AdminServer;
let browser: Browser;

describe.skipIf(!hasChromium)("web UI", () => {
  beforeAll(async () => {
    if (!built) throw new Error("the UI scripts are not built: run npm run build first");
    nats = await startNatsServer();
    nc = await connectNats(nats.url, { name: "test" });
    index = lazyIndexView({ nc });
    // Payments are not run, so placed orders wait in awaitingPayment with a pending call.
    node = await createNode({ servers: nats.url, modules: Object.values({ ticker, shipment, ...orderModule }), shards: 4, runFunctions: false, index });
    projector = await startProjector({ nc });
    admin = await createAdminServer({ nc, node, programs: [ticker, shipment, orderModule.order, orderModule.alerts], index, port: 0 });
    fm = await createClient({ servers: nats.url });
    for (let i = 1; i <= 12; i++) await fm.send(`order/o${String(i).padStart(2, "0")}`, { type: "PLACE", amountCents: 1000 + i });
    for (const k of ["o10", "o11", "o12"]) await fm.send(`order/${k}`, { type: "CANCEL" });
    await fm.ask("shipment/s1", { type: "PACKED" });
    await fm.ask("shipment/s1", { type: "STOP" });
    await fm.ask("shipment/s1", { type: "PAY" });
    const view = await index.get();
    await waitFor(() => view.stats("order").states.cancelled === 3 && view.stats("order").states.awaitingPayment === 9 && view.get("shipment", "s1")?.step === 3, { what: "the index" });
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.[Symbol.asyncDispose]();
    await fm?.close();
    await admin?.close();
    await projector?.drain();
    await node?.close();
    await index?.close();
    await nc?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  async function open(hash: string): Promise<Page> {
    const page = await browser.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(m.text());
    });
    await page.goto(`${admin.url}/${hash}`);
    await page.waitForSelector("body[data-ready=true]");
    expect(errors).toEqual([]);
    return page;
  }

  const count = (page: Page, state: string) => page.locator(`[data-testid=counts] tr[data-state="${state}"] .count`).textContent();
  const activePaths = (page: Page) => page.$$eval("svg.chart g.state.active", (gs) => gs.map((g) => g.getAttribute("data-path")).sort());

  it("shows how many actors are in each state, on the table and the statechart", async () => {
    const page = await open("#/programs/order");
    expect(await count(page, "awaitingPayment")).toBe("9");
    expect(await count(page, "cancelled")).toBe("3");
    expect(await count(page, "new")).toBe("0");
    await page.waitForSelector("svg.chart g.state[data-path=awaitingPayment] .badge[visibility=visible]");
    expect(await page.textContent("svg.chart g.state[data-path=awaitingPayment] .badge text")).toBe("9");
    expect(await page.$$eval("svg.chart g.state", (gs) => gs.length)).toBe(8);
    await screenshot(page, "counts");
    await page.close();
  });

  it("lists the actors in awaitingPayment, and the state's row leads there", async () => {
    const page = await open("#/programs/order");
    await page.click("[data-testid=counts] tr[data-state=awaitingPayment] a");
    await page.waitForSelector("[data-testid=actor-list] tbody tr");
    await waitFor(async () => (await page.$$("[data-testid=actor-list] tbody tr")).length === 9, { what: "nine rows" });
    const rows = await page.$$eval("[data-testid=actor-list] tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].slice(0, 2).map((td) => td.textContent)));
    expect(rows.map((r) => r[0])).toEqual(["o01", "o02", "o03", "o04", "o05", "o06", "o07", "o08", "o09"]);
    expect(rows.every((r) => r[1] === "awaitingPayment")).toBe(true);
    expect(await page.inputValue("[data-testid=state-filter]")).toBe("awaitingPayment");
    await page.selectOption("[data-testid=state-filter]", "cancelled");
    await waitFor(async () => (await page.$$eval("[data-testid=actor-list] tbody tr td:first-child", (tds) => tds.map((td) => td.textContent))).join() === "o10,o11,o12", { what: "the cancelled ones" });
    await screenshot(page, "actor-list");
    await page.close();
  });

  it("draws an actor's statechart with its current state highlighted, and its pending call", async () => {
    const page = await open("#/actors/order/o01");
    await page.waitForSelector("svg.chart g.state.active");
    expect(await activePaths(page)).toEqual(["awaitingPayment"]);
    expect(await page.textContent("[data-testid=current-state]")).toBe("awaitingPayment");
    expect(await page.textContent("[data-testid=detail]")).toContain("payments.charge");
    await screenshot(page, "actor-order");
    await page.close();

    const nested = await open("#/actors/shipment/s1");
    await nested.waitForSelector("svg.chart g.state.active");
    expect(await activePaths(nested)).toEqual(["inTransit", "inTransit.billing", "inTransit.billing.paid", "inTransit.tracking", "inTransit.tracking.held"]);
    expect(await nested.textContent("[data-testid=detail]")).toContain("xstate.after.60000.shipment.inTransit.tracking.held");
    await screenshot(nested, "actor-nested");
    await nested.close();
  });

  it("steps the timeline back and forth and shows the state at each step", async () => {
    const page = await open("#/actors/shipment/s1");
    await page.waitForSelector("svg.chart g.state.active");
    const shown = () => page.textContent("[data-testid=shown-state]");
    expect(await shown()).toBe("inTransit.tracking.held, inTransit.billing.paid");
    await page.click("[data-testid=prev]");
    await waitFor(async () => (await shown()) === "inTransit.tracking.held, inTransit.billing.unpaid", { what: "step 2" });
    expect(await page.textContent("[data-testid=step-label]")).toBe("step 2 of 3");
    expect(await activePaths(page)).toEqual(["inTransit", "inTransit.billing", "inTransit.billing.unpaid", "inTransit.tracking", "inTransit.tracking.held"]);
    await page.click("[data-testid=first]");
    await waitFor(async () => (await shown()) === "inTransit.tracking.moving, inTransit.billing.unpaid", { what: "step 1" });
    expect(await activePaths(page)).toContain("inTransit.tracking.moving");
    expect(await page.textContent("[data-testid=detail]")).toContain("At step 1");
    await screenshot(page, "timeline-step-1");
    await page.click("[data-testid=timeline] tr[data-step='3']");
    await waitFor(async () => (await shown()) === "inTransit.tracking.held, inTransit.billing.paid", { what: "step 3 from the row" });
    await page.click("[data-testid=prev]");
    await page.click("[data-testid=next]");
    await waitFor(async () => (await page.textContent("[data-testid=step-label]"))?.startsWith("step 3 of 3") === true, { what: "back at step 3" });
    await page.close();
  });

  it("updates the actor page and the counts live when an event is sent", async () => {
    const actor = await open("#/actors/order/o01");
    const counts = await open("#/programs/order");
    await actor.waitForSelector("svg.chart g.state.active");
    // Through the page's own form.
    await actor.fill("[data-testid=event-input]", '{ "type": "CANCEL" }');
    await actor.click("[data-testid=send]");
    await waitFor(async () => (await actor.textContent("[data-testid=current-state]")) === "cancelled", { what: "the actor page to follow the step" });
    await waitFor(async () => JSON.stringify(await activePaths(actor)) === '["cancelled"]', { what: "the highlight to move" });
    expect(await actor.textContent("[data-testid=step-label]")).toBe("step 2 of 2 · live");
    expect(await actor.$$eval("[data-testid=timeline] tbody tr[data-step]", (trs) => trs.length)).toBe(2);
    await screenshot(actor, "live-actor");
    // And from outside the browser.
    await fm.send("order/o02", { type: "CANCEL" });
    await waitFor(async () => (await count(counts, "cancelled")) === "5" && (await count(counts, "awaitingPayment")) === "7", { what: "the counts page to update" });
    await screenshot(counts, "live-counts");
    await actor.close();
    await counts.close();
  });

  it("shows the cluster: nodes, shards and owners", async () => {
    const page = await open("#/cluster");
    expect(await page.$$eval("[data-testid=nodes] tbody tr", (trs) => trs.length)).toBe(1);
    expect(await page.textContent("[data-testid=nodes]")).toContain(node.name);
    expect(await page.$$eval("[data-testid=shards] .shard", (s) => s.length)).toBe(4);
    await screenshot(page, "cluster");
    await page.close();
  });
});
