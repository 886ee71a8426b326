// test/admin/projector.test.ts — the actor index: the projector follows the journal (across restarts and crashes) and the view answers fleet queries.
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encodeEntry, indexBucket, openIndexView, parseEntry, startProjector, statePaths, type IndexView } from "../../node/index-projector/index.js";
import { readLast } from "../../node/journal.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { connectNats } from "../../protocol/connect.js";
import { createSubjects, parseActorAddress } from "../../protocol/subjects.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";
import { shipment, ticker } from "./programs.js";

let nats: NatsServer;
let node: FlowmetalNode;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let view: IndexView;
const subjects = createSubjects();
const tick = new TextEncoder().encode(JSON.stringify({ type: "TICK" }));

beforeAll(async () => {
  nats = await startNatsServer();
  node = await createNode({ servers: nats.url, modules: [ticker, shipment], shards: 4 });
  nc = await connectNats(nats.url, { name: "test" });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  view = await openIndexView({ nc });
});
afterAll(async () => {
  await view?.close();
  await node?.close();
  await nc?.close();
  await nats?.[Symbol.asyncDispose]();
});

/** Publishes `events` TICKs to each of `actors` actors, interleaved, 500 in flight. */
async function load(prefix: string, actors: number, events: number): Promise<void> {
  const total = actors * events;
  let next = 0;
  const lane = async () => {
    while (next < total) {
      const i = next++;
      await js.publish(`fm.in.ticker.${prefix}${i % actors}`, tick);
    }
  };
  await Promise.all(Array.from({ length: 500 }, lane));
}

/** Every actor's index entry equals its last journal record. */
async function converged(prefix: string, actors: number, steps: number): Promise<boolean> {
  for (let i = 0; i < actors; i++) {
    const e = view.get("ticker", `${prefix}${i}`);
    if (!e || e.step !== steps) return false;
  }
  return true;
}

async function expectMatchesJournal(prefix: string, actors: number): Promise<void> {
  for (let i = 0; i < actors; i++) {
    const last = await readLast(jsm, subjects, parseActorAddress(`ticker/${prefix}${i}`));
    const e = view.get("ticker", `${prefix}${i}`);
    expect(e, `ticker/${prefix}${i}`).toMatchObject({ step: last!.record.step, value: last!.record.value, status: last!.record.status, updated: last!.record.time });
  }
}

describe("statePaths", () => {
  it("lists every active state node of nested and parallel values", () => {
    expect(statePaths("idle")).toEqual(["idle"]);
    expect(statePaths({ shipping: "late" })).toEqual(["shipping", "shipping.late"]);
    expect(statePaths({ inTransit: { tracking: "held", billing: "paid" } })).toEqual(["inTransit", "inTransit.tracking", "inTransit.tracking.held", "inTransit.billing", "inTransit.billing.paid"]);
    expect(statePaths({})).toEqual([]);
  });
});

describe("index projector", () => {
  it("keeps each actor's latest state, status and step in KV when steps happen", async () => {
    await using projector = await startProjector({ nc });
    for (let i = 0; i < 10; i++) {
      for (let t = 0; t < (i % 4) + 1; t++) await js.publish(`fm.in.ticker.k${i}`, tick);
      if (i % 5 === 0) await js.publish(`fm.in.ticker.k${i}`, new TextEncoder().encode(JSON.stringify({ type: "FINISH" })));
    }
    await waitFor(() => [...Array(10).keys()].every((i) => view.get("ticker", `k${i}`)?.step === (i % 4) + 1 + (i % 5 === 0 ? 1 : 0)), { what: "the index to show all ten actors" });
    expect(view.get("ticker", "k0")).toMatchObject({ program: "ticker", key: "k0", value: "finished", status: "done", step: 2 });
    expect(view.get("ticker", "k3")).toMatchObject({ value: "even", status: "active", step: 4 });
    const kv = await new Kvm(nc).open(indexBucket("fm"));
    const raw = parseEntry((await kv.get("ticker.k2"))!.value);
    expect(raw).toMatchObject({ program: "ticker", key: "k2", value: "odd", status: "active", step: 3 });
    expect(Math.abs(raw!.updated - Date.now())).toBeLessThan(60_000);
    await waitFor(async () => (await projector.lag()).records === 0, { what: "no lag" });
    expect(view.stats("ticker")).toMatchObject({ total: 10, statuses: { active: 8, done: 2 }, states: { finished: 2 } });
  });

  it("converges when it is drained mid-stream and started again", async () => {
    const first = await startProjector({ nc, batchSize: 16 });
    const loading = load("d", 200, 10);
    await waitFor(() => first.counts.records >= 200, { what: "the first projector to get going" });
    await first.drain();
    const stoppedAt = first.counts.records;
    await loading;
    await using second = await startProjector({ nc });
    await waitFor(() => converged("d", 200, 10), { timeoutMs: 30_000, what: "the index to converge" });
    expect(stoppedAt).toBeLessThan(2000 + 10);
    await expectMatchesJournal("d", 200);
    await waitFor(async () => (await second.lag()).records === 0, { what: "no lag" });
  });

  it("converges when its connection dies mid-batch (unacked records come back)", async () => {
    const doomed = await connectNats(nats.url, { name: "test" });
    const first = await startProjector({ nc: doomed, batchSize: 32, ackWaitMs: 1000 });
    const loading = load("c", 200, 10);
    await waitFor(() => first.counts.records >= 300, { what: "the first projector to get going" });
    // A crash: no drain, whatever it holds is never acknowledged.
    await doomed.close();
    await loading;
    await using second = await startProjector({ nc, ackWaitMs: 1000 });
    await waitFor(() => converged("c", 200, 10), { timeoutMs: 30_000, what: "the index to converge after the crash" });
    await expectMatchesJournal("c", 200);
    await waitFor(async () => (await second.lag()).records === 0, { timeoutMs: 15_000, what: "no lag" });
  });

  it("shares the records between projectors and never moves an entry back", async () => {
    const ncs = [await connectNats(nats.url, { name: "test" }), await connectNats(nats.url, { name: "test" })];
    const seen = new Map<string, number[]>();
    const unsubscribe = view.subscribe((e) => {
      if (e.program === "ticker" && e.key.startsWith("s")) (seen.get(e.key) ?? seen.set(e.key, []).get(e.key)!).push(e.step);
    });
    const projectors = await Promise.all(ncs.map((c) => startProjector({ nc: c, batchSize: 8 })));
    try {
      await load("s", 100, 10);
      await waitFor(() => converged("s", 100, 10), { timeoutMs: 30_000, what: "the index to converge" });
      for (const steps of seen.values()) expect(steps).toEqual([...steps].sort((a, b) => a - b));
      const taken = projectors.map((p) => p.counts.records);
      expect(taken[0]! + taken[1]!).toBeGreaterThanOrEqual(1000);
      expect(taken.every((n) => n > 0)).toBe(true);
    } finally {
      unsubscribe();
      for (const p of projectors) await p.drain();
      for (const c of ncs) await c.close();
    }
  });

  it("shows its lag in records while no projector runs", async () => {
    for (let i = 0; i < 5; i++) await js.publish("fm.in.ticker.lag", tick);
    await waitFor(async () => (await readLast(jsm, subjects, parseActorAddress("ticker/lag")))?.record.step === 5, { what: "the steps" });
    const lag = await view.lag();
    expect(lag).toMatchObject({ records: 5, running: true });
    expect(lag.lastSeq - lag.projectedSeq).toBe(5);
    await using projector = await startProjector({ nc });
    await waitFor(async () => (await projector.lag()).records === 0, { what: "the projector to catch up" });
    await waitFor(() => view.get("ticker", "lag")?.step === 5, { what: "the entry" });
  });
});

describe("index view", () => {
  const prefix = "vt";
  let kvView: IndexView;
  let put: (program: string, key: string, value: unknown, status?: string, step?: number) => Promise<void>;
  let del: (program: string, key: string) => Promise<void>;

  beforeAll(async () => {
    const kv = await new Kvm(nc).create(indexBucket(prefix), { history: 1 });
    put = async (program, key, value, status = "active", step = 1) => {
      await kv.put(`${program}.${key}`, encodeEntry({ program, key, value, status, step, updated: 1_000 + step }));
    };
    del = async (program, key) => {
      await kv.delete(`${program}.${key}`);
    };
    // 25 actors: every third one is in a nested state, every fifth is done.
    for (let i = 0; i < 25; i++) {
      const key = `a${String(i).padStart(2, "0")}`;
      await put("p", key, i % 3 === 0 ? { shipping: "late" } : "waiting", i % 5 === 0 ? "done" : "active", i + 1);
    }
    await put("q", "only", "x");
    kvView = await openIndexView({ nc, prefix });
  });
  afterAll(async () => {
    await kvView?.close();
  });

  it("loads what is in the bucket before it resolves", () => {
    expect(kvView.size).toBe(26);
    expect(kvView.programs()).toEqual([
      { program: "p", total: 25, statuses: { done: 5, active: 20 } },
      { program: "q", total: 1, statuses: { active: 1 } },
    ]);
  });

  it("pages by key with a cursor and counts every match", () => {
    const first = kvView.list({ program: "p", limit: 10 });
    expect(first.actors.map((a) => a.key)).toEqual(["a00", "a01", "a02", "a03", "a04", "a05", "a06", "a07", "a08", "a09"]);
    expect(first).toMatchObject({ total: 25, next: "a09" });
    expect(first.actors[0]).toMatchObject({ actor: "p/a00", program: "p", key: "a00", value: { shipping: "late" }, status: "done", step: 1, updated: 1001 });
    const third = kvView.list({ program: "p", limit: 10, after: "a19" });
    expect(third.actors.map((a) => a.key)).toEqual(["a20", "a21", "a22", "a23", "a24"]);
    expect(third.next).toBeUndefined();
    expect(kvView.list({ program: "nobody" })).toEqual({ program: "nobody", actors: [], total: 0 });
  });

  it("filters by state path (matching ancestors) and by status", () => {
    const late = kvView.list({ program: "p", state: "shipping.late", limit: 3 });
    expect(late.actors.map((a) => a.key)).toEqual(["a00", "a03", "a06"]);
    expect(late).toMatchObject({ total: 9, next: "a06" });
    expect(kvView.list({ program: "p", state: "shipping", limit: 100 }).total).toBe(9);
    expect(kvView.list({ program: "p", status: "done", limit: 100 }).actors.map((a) => a.key)).toEqual(["a00", "a05", "a10", "a15", "a20"]);
    const both = kvView.list({ program: "p", state: "shipping", status: "done", limit: 1, after: "a00" });
    expect(both.actors.map((a) => a.key)).toEqual(["a15"]);
    expect(both.total).toBe(2);
    expect(both.next).toBeUndefined();
    expect(kvView.stats("p")).toEqual({ program: "p", total: 25, states: { shipping: 9, "shipping.late": 9, waiting: 16 }, statuses: { done: 5, active: 20 } });
  });

  it("follows changes, new actors and deletions live", async () => {
    const changes: string[] = [];
    const unsubscribe = kvView.subscribe((e) => changes.push(`${e.key}@${e.step}`));
    await put("p", "a01", "shipped", "done", 9);
    await put("p", "a00x", "waiting");
    await del("p", "a02");
    await waitFor(() => kvView.get("p", "a02") === undefined && kvView.get("p", "a00x") !== undefined && kvView.get("p", "a01")?.step === 9, { what: "the changes" });
    unsubscribe();
    expect(changes).toEqual(["a01@9", "a00x@1"]);
    expect(kvView.list({ program: "p", limit: 4 }).actors.map((a) => a.key)).toEqual(["a00", "a00x", "a01", "a03"]);
    expect(kvView.stats("p")).toMatchObject({ total: 25, states: { shipped: 1, waiting: 15 }, statuses: { done: 6, active: 19 } });
  });
});
