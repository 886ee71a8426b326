// test/admin/api.test.ts — the admin HTTP API through fastify.inject(): routes, schemas, errors, auth scopes, OpenAPI, metrics; plus fm.api.list/stats and live events.
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as orderModule from "../../examples/order.js";
import { buildAdminApp, createAdminServer } from "../../node/admin/server.js";
import { createClient, type Client } from "../../node/client/index.js";
import { lazyIndexView, startProjector, type IndexViewSource, type Projector } from "../../node/index-projector/index.js";
import { countPendingTimers, createPromMetrics, type PromMetrics } from "../../node/metrics.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { connectNats } from "../../protocol/connect.js";
import { createSubjects } from "../../protocol/subjects.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";
import { shipment, ticker } from "./programs.js";

let nats: NatsServer;
let node: FlowmetalNode;
let nc: NatsConnection;
let js: JetStreamClient;
let fm: Client;
let prom: PromMetrics;
let projector: Projector;
let index: IndexViewSource;
let app: FastifyInstance;
let authed: FastifyInstance;
const stops: (() => Promise<void>)[] = [];
const enc = (v: unknown) => new TextEncoder().encode(JSON.stringify(v));
const programs = [ticker, shipment, orderModule.order, orderModule.alerts];

beforeAll(async () => {
  nats = await startNatsServer();
  prom = createPromMetrics();
  nc = await connectNats(nats.url, { name: "test" });
  js = jetstream(nc);
  index = lazyIndexView({ nc });
  // Functions are not run: an order waits in awaitingPayment with its call pending.
  node = await createNode({ servers: nats.url, modules: Object.values({ ticker, shipment, ...orderModule }), shards: 4, metrics: prom.metrics, runFunctions: false, index });
  projector = await startProjector({ nc, onBatch: (r, w, ms) => prom.indexBatch(r, w, ms) });
  const jsm = await jetstreamManager(nc);
  prom.addSources({ activeActors: () => node.activeActors(), timersPending: () => countPendingTimers(jsm, createSubjects()), indexLag: async () => (await projector.lag()).records });
  fm = await createClient({ servers: nats.url });
  const a = await buildAdminApp({ nc, node, programs, index, registry: prom.registry });
  const b = await buildAdminApp({ nc, node, programs, index, registry: prom.registry, tokens: { read: "read-secret", admin: "admin-secret" } });
  app = a.app;
  authed = b.app;
  stops.push(a.stop, b.stop);

  for (let i = 0; i < 30; i++) {
    const key = `t${String(i).padStart(2, "0")}`;
    for (let t = 0; t < i % 3; t++) await js.publish(`fm.in.ticker.${key}`, enc({ type: "TICK" }));
    if (i % 3 === 0) await js.publish(`fm.in.ticker.${key}`, enc(i % 6 === 0 ? { type: "FINISH" } : { type: "TICK" }));
  }
  await fm.ask("shipment/s1", { type: "PACKED" });
  await fm.ask("shipment/s1", { type: "STOP" });
  await fm.ask("shipment/s1", { type: "PAY" });
  await fm.ask("order/o1", { type: "PLACE", amountCents: 4200 });
  const view = await index.get();
  await waitFor(() => view.stats("ticker").total === 30 && view.get("shipment", "s1")?.step === 3 && view.get("order", "o1") !== undefined, { what: "the index" });
});
afterAll(async () => {
  for (const s of stops) await s();
  await fm?.close();
  await projector?.drain();
  await node?.close();
  await index?.close();
  await nc?.close();
  await nats?.[Symbol.asyncDispose]();
});

async function getJson(path: string, a: FastifyInstance = app, headers: Record<string, string> = {}) {
  const res = await a.inject({ method: "GET", url: path, headers });
  return { status: res.statusCode, body: res.headers["content-type"]?.toString().includes("json") ? (res.json() as Record<string, unknown>) : res.body, res };
}

describe("admin API", () => {
  it("lists loaded programs with their actor counts", async () => {
    const { status, body } = await getJson("/api/programs");
    expect(status).toBe(200);
    expect((body as { programs: unknown[] }).programs).toEqual([
      { name: "alerts", version: "1", description: "an inbox of operational alerts", loaded: true, actors: 0, statuses: {} },
      expect.objectContaining({ name: "order", loaded: true, actors: 1, statuses: { active: 1 } }),
      expect.objectContaining({ name: "shipment", version: "2", actors: 1 }),
      { name: "ticker", version: "1", description: null, loaded: true, actors: 30, statuses: { active: 25, done: 5 } },
    ]);
  });

  it("serves a statechart as data with nested, parallel, history and final states", async () => {
    const { status, body } = await getJson("/api/programs/shipment");
    expect(status).toBe(200);
    const root = (body as { root: { states: { key: string; type: string; states: unknown[]; transitions: unknown[] }[] } }).root;
    expect(body).toMatchObject({ program: "shipment", version: "2", description: "packing → in transit (tracking ∥ billing) → delivered", root: { id: "shipment", type: "compound", initial: "shipment.packing" } });
    expect(root.states.map((s) => [s.key, s.type])).toEqual([["packing", "atomic"], ["inTransit", "parallel"], ["delivered", "final"]]);
    const inTransit = root.states[1]!;
    expect(inTransit.transitions).toEqual([{ event: "DELIVER", label: "DELIVER", kind: "event", targets: ["shipment.delivered"], guard: "paid", actions: [], reenter: false }]);
    expect(inTransit.states).toMatchObject([
      { key: "tracking", type: "compound", path: "inTransit.tracking", initial: "shipment.inTransit.tracking.moving", states: [{ key: "moving" }, { key: "held" }, { key: "resume", type: "history", history: "shallow" }] },
      { key: "billing", initial: "shipment.inTransit.billing.unpaid", states: [{ key: "unpaid" }, { key: "paid", type: "final" }] },
    ]);
    const held = (inTransit.states[0] as { states: { transitions: unknown[] }[] }).states[1]!;
    expect(held.transitions).toEqual(expect.arrayContaining([
      expect.objectContaining({ label: "GO", kind: "event", targets: ["shipment.inTransit.tracking.moving"] }),
      expect.objectContaining({ label: "after 1m", kind: "after", targets: ["shipment.inTransit.tracking.moving"] }),
    ]));
    const order = await getJson("/api/programs/order");
    const paying = (order.body as { root: { states: { key: string; invoke: unknown[]; transitions: { label: string; kind: string }[] }[] } }).root.states.find((s) => s.key === "awaitingPayment")!;
    expect(paying.invoke).toEqual([{ id: "charge", src: "charge" }]);
    expect(paying.transitions.map((t) => [t.label, t.kind])).toEqual(expect.arrayContaining([["done: charge", "done"], ["error: charge", "error"], ["CANCEL", "event"]]));
  });

  it("answers 404 with a Flowmetal error for a program it does not run", async () => {
    const { status, body } = await getJson("/api/programs/nosuch");
    expect(status).toBe(404);
    expect(body).toMatchObject({ code: "FM_ERR_UNKNOWN_PROGRAM", retryable: false });
    expect(String((body as { message: string }).message)).toContain("ticker");
  });

  it("counts actors per state and status from the index, with the lag", async () => {
    const { status, body } = await getJson("/api/programs/ticker/stats");
    expect(status).toBe(200);
    expect(body).toMatchObject({ program: "ticker", total: 30, states: { even: 10, odd: 15, finished: 5 }, statuses: { active: 25, done: 5 }, lag: { running: true } });
    const nested = await getJson("/api/programs/shipment/stats");
    expect((nested.body as { states: unknown }).states).toEqual({ inTransit: 1, "inTransit.tracking": 1, "inTransit.tracking.held": 1, "inTransit.billing": 1, "inTransit.billing.paid": 1 });
  });

  it("lists actors by state and status, page by page", async () => {
    const keys: string[] = [];
    let after: string | undefined;
    let pages = 0;
    do {
      const { status, body } = await getJson(`/api/programs/ticker/actors?state=odd&limit=4${after ? `&after=${after}` : ""}`);
      expect(status).toBe(200);
      const page = body as { actors: { key: string; value: string; actor: string }[]; total: number; next?: string };
      expect(page.total).toBe(15);
      expect(page.actors.every((a) => a.value === "odd" && a.actor === `ticker/${a.key}`)).toBe(true);
      keys.push(...page.actors.map((a) => a.key));
      after = page.next;
      pages++;
    } while (after);
    expect(pages).toBe(4);
    expect(keys).toEqual([...keys].sort());
    expect(new Set(keys).size).toBe(15);
    const done = await getJson("/api/programs/ticker/actors?status=done");
    expect((done.body as { actors: { key: string }[] }).actors.map((a) => a.key)).toEqual(["t00", "t06", "t12", "t18", "t24"]);
  });

  it("refuses bad queries with FM_ERR_BAD_REQUEST", async () => {
    for (const q of ["limit=0", "limit=5000", "status=sleeping", "limit=abc"]) {
      const { status, body } = await getJson(`/api/programs/ticker/actors?${q}`);
      expect(status, q).toBe(400);
      expect(body).toMatchObject({ code: "FM_ERR_BAD_REQUEST" });
    }
    expect((await getJson("/api/actors/ticker/bad%20key")).status).toBe(400);
    expect((await getJson("/api/nothing")).status).toBe(404);
  });

  it("shows an actor's snapshot with its pending call", async () => {
    const { status, body } = await getJson("/api/actors/order/o1");
    expect(status).toBe(200);
    expect(body).toMatchObject({ actor: "order/o1", program: "order", version: "1", step: 1, value: "awaitingPayment", status: "active", context: { amountCents: 4200 }, calls: { charge: { fn: "payments.charge", callId: "order.o1.1.0", step: 1 } }, timers: {} });
    const missing = await getJson("/api/actors/order/nobody");
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ code: "FM_ERR_UNKNOWN_ACTOR" });
  });

  it("pages an actor's history and shows the actor at any past step", async () => {
    const first = await getJson("/api/actors/shipment/s1/history?limit=2");
    const page = first.body as { steps: { step: number; event: { type: string }; value: unknown; effects: unknown[] }[]; next?: number };
    expect(page.steps.map((s) => [s.step, s.event.type])).toEqual([[1, "PACKED"], [2, "STOP"]]);
    expect(typeof page.next).toBe("number");
    const rest = await getJson(`/api/actors/shipment/s1/history?limit=2&after=${page.next}`);
    expect((rest.body as { steps: { step: number }[]; next?: number }).steps.map((s) => s.step)).toEqual([3]);
    expect((rest.body as { next?: number }).next).toBeUndefined();

    const at2 = await getJson("/api/actors/shipment/s1/steps/2");
    expect(at2.status).toBe(200);
    expect(at2.body).toMatchObject({ step: 2, event: { type: "STOP" }, value: { inTransit: { tracking: "held", billing: "unpaid" } }, context: { stops: 1 }, effects: [{ kind: "schedule" }] });
    expect(Object.keys((at2.body as { timers: object }).timers)).toHaveLength(1);
    const at1 = await getJson("/api/actors/shipment/s1/steps/1");
    expect(at1.body).toMatchObject({ step: 1, value: { inTransit: { tracking: "moving", billing: "unpaid" } }, timers: {} });
    const none = await getJson("/api/actors/shipment/s1/steps/9");
    expect(none.status).toBe(404);
    expect((await getJson("/api/actors/shipment/s1/steps/0")).status).toBe(400);
  });

  it("sends an event that the actor then takes", async () => {
    const res = await app.inject({ method: "POST", url: "/api/actors/ticker/sent/events", payload: { event: { type: "TICK" }, msgId: "ui-1" } });
    expect(res.statusCode).toBe(202);
    expect(res.json()).toMatchObject({ actor: "ticker/sent", duplicate: false });
    const again = await app.inject({ method: "POST", url: "/api/actors/ticker/sent/events", payload: { event: { type: "TICK" }, msgId: "ui-1" } });
    expect(again.json()).toMatchObject({ duplicate: true, seq: (res.json() as { seq: number }).seq });
    await waitFor(async () => (await fm.get("ticker/sent")).value === "odd", { what: "the step" });
    const bad = await app.inject({ method: "POST", url: "/api/actors/ticker/sent/events", payload: { event: { kind: "TICK" } } });
    expect(bad.statusCode).toBe(400);
    const unknown = await app.inject({ method: "POST", url: "/api/actors/nosuch/x/events", payload: { event: { type: "X" } } });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json()).toMatchObject({ code: "FM_ERR_UNKNOWN_PROGRAM" });
  });

  it("shows this node as the whole cluster when it is not clustered", async () => {
    const { status, body } = await getJson("/api/cluster");
    expect(status).toBe(200);
    expect(body).toMatchObject({ clustered: false, self: node.name, shards: 4, nodes: [{ name: node.name, owns: [0, 1, 2, 3] }], handoffs: [] });
    expect((body as { owners: unknown[] }).owners).toHaveLength(4);
    const idx = await getJson("/api/index");
    expect(idx.body).toMatchObject({ actors: 33, lag: { running: true } });
  });

  it("needs a token when tokens are set: read for reading, admin for sending", async () => {
    const none = await getJson("/api/programs", authed);
    expect(none.status).toBe(401);
    expect(none.body).toMatchObject({ code: "FM_ERR_UNAUTHORIZED" });
    expect(none.res.headers["www-authenticate"]).toContain("Bearer");
    expect((await getJson("/api/programs", authed, { authorization: "Bearer wrong" })).status).toBe(401);
    expect((await getJson("/api/programs", authed, { authorization: "Bearer read-secret" })).status).toBe(200);
    expect((await getJson("/api/programs", authed, { authorization: "Bearer admin-secret" })).status).toBe(200);
    const post = (token: string) => authed.inject({ method: "POST", url: "/api/actors/ticker/authz/events", payload: { event: { type: "TICK" } }, headers: { authorization: `Bearer ${token}` } });
    const readOnly = await post("read-secret");
    expect(readOnly.statusCode).toBe(403);
    expect(readOnly.json()).toMatchObject({ code: "FM_ERR_UNAUTHORIZED" });
    expect((await post("admin-secret")).statusCode).toBe(202);
    expect((await getJson("/metrics", authed)).status).toBe(401);
    expect((await getJson("/metrics", authed, { authorization: "Bearer read-secret" })).status).toBe(200);
    // The page and its scripts hold no data: they are public; health too.
    expect((await getJson("/", authed)).status).toBe(200);
    expect((await getJson("/healthz", authed)).status).toBe(200);
  });

  it("publishes an OpenAPI document covering every route and its schemas", async () => {
    const { status, body } = await getJson("/api/openapi.json");
    expect(status).toBe(200);
    const doc = body as { openapi: string; paths: Record<string, Record<string, { summary?: string; parameters?: { name: string; in: string }[]; responses: object; requestBody?: object }>>; components: { schemas: Record<string, unknown> } };
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths).sort()).toEqual([
      "/api/actors/{program}/{key}",
      "/api/actors/{program}/{key}/events",
      "/api/actors/{program}/{key}/history",
      "/api/actors/{program}/{key}/steps/{step}",
      "/api/cluster",
      "/api/index",
      "/api/live",
      "/api/programs",
      "/api/programs/{program}",
      "/api/programs/{program}/actors",
      "/api/programs/{program}/stats",
      "/metrics",
    ]);
    for (const [path, ops] of Object.entries(doc.paths)) for (const op of Object.values(ops)) expect(op.summary, path).toBeTruthy();
    expect(doc.paths["/api/programs/{program}/actors"]!.get!.parameters!.map((p) => `${p.in}:${p.name}`)).toEqual(["path:program", "query:state", "query:status", "query:after", "query:limit"]);
    expect(doc.paths["/api/actors/{program}/{key}/events"]!.post!.requestBody).toBeDefined();
    // Every reference resolves.
    const refs = [...JSON.stringify(doc).matchAll(/"\$ref":"#\/components\/schemas\/([A-Za-z]+)"/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(10);
    for (const r of refs) expect(doc.components.schemas[r], r).toBeDefined();
  });

  it("serves Prometheus metrics for steps, appends, effects, timers, shards and the index", async () => {
    const { status, body, res } = await getJson("/metrics");
    expect(status).toBe(200);
    expect(res.headers["content-type"]).toContain("text/plain");
    const text = String(body);
    expect(text).toMatch(/flowmetal_actor_steps_total\{program="ticker",outcome="ok"\} \d+/);
    expect(text).toMatch(/flowmetal_actor_step_duration_seconds_count\{program="shipment"\} 3/);
    expect(text).toMatch(/flowmetal_journal_append_duration_seconds_count \d+/);
    expect(text).toMatch(/flowmetal_effect_published_total\{kind="schedule"\} 1/);
    expect(text).toMatch(/flowmetal_effect_published_total\{kind="call"\} 1/);
    expect(text).toMatch(/flowmetal_timer_pending 1\b/);
    expect(text).toMatch(/flowmetal_shard_owned 4\b/);
    expect(text).toMatch(/flowmetal_actor_active \d+/);
    expect(text).toMatch(/flowmetal_index_lag_records \d+/);
    expect(text).toMatch(/flowmetal_index_records_projected_total \d+/);
    expect(text).toContain("process_cpu_seconds_total");
  });

  it("answers fm.api.list and fm.api.stats over NATS from the same index", async () => {
    const page = await fm.list("ticker", { state: "even", limit: 3 });
    expect(page).toMatchObject({ program: "ticker", total: 10, next: page.actors[2]!.key });
    expect(page.actors.map((a) => a.value)).toEqual(["even", "even", "even"]);
    const st = await fm.stats("ticker");
    // 30 made at the start, plus ticker/sent and ticker/authz from the tests above.
    expect(st).toMatchObject({ total: 32, states: { odd: 17 }, lag: { running: true } });
    await expect(fm.list("ticker", { limit: 0 })).rejects.toMatchObject({ code: "FM_ERR_BAD_REQUEST" });
    await expect(fm.list("bad name")).rejects.toMatchObject({ code: "FM_ERR_INVALID_TOKEN" });
  });

  it("is ready once NATS and the index are", async () => {
    expect((await getJson("/readyz")).body).toEqual({ ready: true, nats: true, index: true });
  });
});

describe("live events", () => {
  it("streams an actor's steps and index changes as server-sent events", async () => {
    await using server = await createAdminServer({ nc, node, programs, index, port: 0 });
    const read = async (query: string, until: RegExp, act: () => Promise<unknown>) => {
      const ac = new AbortController();
      const res = await fetch(`${server.url}/api/live?${query}`, { signal: ac.signal });
      expect(res.headers.get("content-type")).toContain("text/event-stream");
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = "";
      const first = await reader.read();
      text += first.value ?? "";
      await act();
      const deadline = Date.now() + 10_000;
      while (!until.test(text) && Date.now() < deadline) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      ac.abort();
      return text;
    };
    const steps = await read("actor=ticker%2Flive", /event: step\ndata: .*"step":2/, async () => {
      await fm.send("ticker/live", { type: "TICK" });
      await fm.send("ticker/live", { type: "TICK" });
    });
    expect(steps).toMatch(/event: step\ndata: \{"actor":"ticker\/live","step":1,.*"value":"odd"/);
    const changes = await read("program=ticker", /event: index\ndata: \{"program":"ticker","changed":\d+\}/, () => fm.send("ticker/live2", { type: "TICK" }));
    expect(changes).toMatch(/event: index/);
  });
});
