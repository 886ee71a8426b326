// test/bench/admin.ts — the admin benchmark: index projector lag under the parallel-steps load, and the admin API's
// actor list and counts with 100,000 actors in the index. Not a test: it prints figures.
//
//   npm run bench:admin                  full run (about a minute on 2 cores)
//   node dist/test/bench/admin.js --quick  smaller counts, to smoke-test the script
//
// Counts: BENCH_ADMIN_ACTORS (actors in the parallel load), BENCH_ADMIN_PER_ACTOR (events each),
// BENCH_ADMIN_INDEXED (actors in the index for the list timings).
import { performance } from "node:perf_hooks";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { buildAdminApp } from "../../node/admin/server.js";
import { encodeEntry, indexBucket, openIndexView, startProjector } from "../../node/index-projector/index.js";
import { createNode } from "../../node/node.js";
import { connectNats } from "../../protocol/connect.js";
import { createSubjects } from "../../protocol/subjects.js";
import { startNatsServer } from "../support/nats-server.js";
import { benchCounter } from "./program.js";
import { envCount, fmt, memory, percentile, pipelined, round, table, until } from "./util.js";

const quick = process.argv.includes("--quick");
const num = (name: string, full: number, small: number) => envCount(`BENCH_ADMIN_${name}`, full, small, quick, true);
const config = {
  actors: num("ACTORS", 1_000, 200),
  perActor: num("PER_ACTOR", 20, 10),
  indexed: num("INDEXED", 100_000, 10_000),
  window: 1_000,
  requests: quick ? 50 : 200,
};
const subjects = createSubjects();
const INC = new TextEncoder().encode(JSON.stringify({ type: "INC" }));

async function journalCount(jsm: JetStreamManager): Promise<number> {
  return (await jsm.streams.info(subjects.streams.journal)).state.messages;
}

interface LoadResult {
  steps: number;
  seconds: number;
  stepsPerSec: number;
  maxLagRecords: number;
  meanLagRecords: number;
  catchUpMs: number;
  delayP50Ms: number;
  delayP99Ms: number;
  records: number;
  writes: number;
}

/** The parallel-steps load (actors × events, publishes pipelined), with or without a projector following it. */
async function parallelLoad(url: string, prefix: string, withProjector: boolean): Promise<LoadResult> {
  const nc = await connectNats(url, { name: "bench-load" });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const pnc = await connectNats(url, { name: "bench-projector" });
  const delays: number[] = [];
  const projector = withProjector ? await startProjector({ nc: pnc, onBatch: (_r, _w, ms) => delays.push(ms) }) : undefined;
  // The projector starts caught up: only this run's steps are measured.
  if (projector) await until(async () => (await projector.lag()).records === 0, "the projector to catch up first", 120_000, 10);
  delays.length = 0;
  const before = projector ? { records: projector.counts.records, written: projector.counts.written } : { records: 0, written: 0 };
  const total = config.actors * config.perActor;
  const base = await journalCount(jsm);
  const lags: number[] = [];
  let sampling = true;
  const sampler = (async () => {
    while (sampling && projector) {
      lags.push((await projector.lag()).records);
      await new Promise((r) => setTimeout(r, 100));
    }
  })();
  const t0 = performance.now();
  await pipelined(total, config.window, (i) => js.publish(`fm.in.counter.${prefix}${i % config.actors}`, INC));
  let tDone = 0;
  await until(async () => {
    if ((await journalCount(jsm)) < base + total) return false;
    tDone = performance.now();
    return true;
  }, `${total} steps`, 300_000, 20);
  let catchUpMs = 0;
  if (projector) {
    await until(async () => (await projector.lag()).records === 0, "the index to catch up", 120_000, 10);
    catchUpMs = performance.now() - tDone;
  }
  sampling = false;
  await sampler;
  const counts = projector ? { records: projector.counts.records - before.records, written: projector.counts.written - before.written } : { records: 0, written: 0 };
  await projector?.drain();
  await pnc.close();
  await nc.close();
  delays.sort((a, b) => a - b);
  const seconds = (tDone - t0) / 1000;
  return {
    steps: total,
    seconds: round(seconds, 2),
    stepsPerSec: round(total / seconds),
    maxLagRecords: Math.max(0, ...lags),
    meanLagRecords: lags.length ? round(lags.reduce((a, b) => a + b, 0) / lags.length) : 0,
    catchUpMs: round(catchUpMs),
    delayP50Ms: round(percentile(delays, 50)),
    delayP99Ms: round(percentile(delays, 99)),
    records: counts.records,
    writes: counts.written,
  };
}

/** Fills the index with `n` actors of program `shop` spread over states, as the projector would have. */
async function fillIndex(url: string, n: number): Promise<number> {
  const nc = await connectNats(url, { name: "bench-fill" });
  const kv = await new Kvm(nc).create(indexBucket("fm"), { history: 1 });
  const states = ["awaitingPayment", "awaitingShipment", "awaitingShipment", "shipped", "delivered", "delivered", "delivered", { shipping: "late" }, "new", "awaitingShipment"];
  const t0 = performance.now();
  await pipelined(n, 2_000, (i) => {
    const value = states[i % states.length]!;
    const key = `o-${String(i).padStart(7, "0")}`;
    const status = value === "delivered" ? "done" : "active";
    return kv.put(`shop.${key}`, encodeEntry({ program: "shop", key, value, status, step: 1 + (i % 7), updated: Date.now() }));
  });
  const ms = performance.now() - t0;
  await nc.close();
  return ms;
}

async function timeRequests(base: string, paths: readonly string[], count: number): Promise<{ p50: number; p99: number; max: number; bytes: number }> {
  const lat: number[] = [];
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const path = paths[i % paths.length]!;
    const t = performance.now();
    const res = await fetch(`${base}${path}`);
    const body = await res.arrayBuffer();
    lat.push(performance.now() - t);
    if (!res.ok) throw new Error(`GET ${path}: HTTP ${res.status}`);
    bytes = body.byteLength;
  }
  lat.sort((a, b) => a - b);
  return { p50: round(percentile(lat, 50), 2), p99: round(percentile(lat, 99), 2), max: round(lat[lat.length - 1] ?? 0, 2), bytes };
}

async function main(): Promise<void> {
  await using server = await startNatsServer();
  const node = await createNode({ servers: server.url, modules: [benchCounter] });
  try {
    console.log(`admin benchmark${quick ? " (quick)" : ""}: ${config.actors} actors × ${config.perActor} events; ${fmt(config.indexed)} actors in the index`);
    // Warm up the node and JetStream.
    const warm = await connectNats(server.url, { name: "bench-warm" });
    await pipelined(2_000, config.window, (i) => jetstream(warm).publish(`fm.in.counter.w${i % 200}`, INC));
    await warm.close();

    console.log("1/2 parallel steps, without and with the index projector…");
    const without = await parallelLoad(server.url, "a", false);
    const withIndex = await parallelLoad(server.url, "b", true);
    table(`index projector under the parallel-steps load (${fmt(withIndex.steps)} steps, load from the node's process)`, [
      ["", "steps/s", "seconds", "max lag (records)", "mean lag", "catch-up after last step (ms)", "step → index p50 / p99 (ms)"],
      ["without projector", fmt(without.stepsPerSec), fmt(without.seconds, 2), "-", "-", "-", "-"],
      ["with projector", fmt(withIndex.stepsPerSec), fmt(withIndex.seconds, 2), fmt(withIndex.maxLagRecords), fmt(withIndex.meanLagRecords), fmt(withIndex.catchUpMs), `${fmt(withIndex.delayP50Ms)} / ${fmt(withIndex.delayP99Ms)}`],
      [`index writes: ${fmt(withIndex.writes)} for ${fmt(withIndex.records)} records (coalesced per actor within a batch)`, "", "", "", "", "", ""],
    ]);

    console.log(`2/2 ${fmt(config.indexed)} actors in the index…`);
    const fillMs = await fillIndex(server.url, config.indexed);
    const nc = await connectNats(server.url, { name: "bench-admin" });
    const heap0 = memory();
    const t0 = performance.now();
    const view = await openIndexView({ nc });
    const loadMs = performance.now() - t0;
    const heap1 = memory();
    const { app, stop } = await buildAdminApp({ nc, index: { get: async () => view, close: async () => undefined } });
    const base = await app.listen({ host: "127.0.0.1", port: 0 });
    const middle = `o-${String(Math.floor(config.indexed / 2)).padStart(7, "0")}`;
    const runs: [string, string[]][] = [
      ["list, no filter, first page (50)", ["/api/programs/shop/actors?limit=50"]],
      ["list, state=awaitingPayment, first page", ["/api/programs/shop/actors?state=awaitingPayment&limit=50"]],
      ["list, state=awaitingPayment, from the middle", [`/api/programs/shop/actors?state=awaitingPayment&limit=50&after=${middle}`]],
      ["list, nested state shipping.late", ["/api/programs/shop/actors?state=shipping.late&limit=50"]],
      ["list, state + status", ["/api/programs/shop/actors?state=awaitingShipment&status=active&limit=50"]],
      ["counts per state (stats)", ["/api/programs/shop/stats"]],
    ];
    const rows: string[][] = [["request", "p50 ms", "p99 ms", "max ms", "bytes"]];
    for (const [name, paths] of runs) {
      await timeRequests(base, paths, 5);
      const r = await timeRequests(base, paths, config.requests);
      rows.push([name, fmt(r.p50, 2), fmt(r.p99, 2), fmt(r.max, 2), fmt(r.bytes)]);
    }
    // A burst of new actors makes the next list merge them into the key order once.
    const kv = await new Kvm(nc).open(indexBucket("fm"));
    await pipelined(1_000, 500, (i) => kv.put(`shop.n-${i}`, encodeEntry({ program: "shop", key: `n-${i}`, value: "new", status: "active", step: 1, updated: Date.now() })));
    await until(() => view.size >= config.indexed + 1_000, "the burst in the view", 30_000);
    const afterBurst = await timeRequests(base, ["/api/programs/shop/actors?limit=50"], 1);
    rows.push(["list right after 1,000 new actors", fmt(afterBurst.p50, 2), "", "", fmt(afterBurst.bytes)]);
    table(`admin API with ${fmt(config.indexed)} actors in the index (HTTP on loopback, ${config.requests} requests each)`, rows);
    table("index view", [
      ["filling the bucket (KV puts, 2,000 in flight)", `${fmt(fillMs)} ms`],
      ["loading it into the view (open → caught up)", `${fmt(loadMs)} ms`],
      ["heap for the view", `${fmt(heap1.heapUsedMiB - heap0.heapUsedMiB, 1)} MiB (${fmt(((heap1.heapUsedMiB - heap0.heapUsedMiB) * 1024 * 1024) / config.indexed)} bytes per actor)`],
    ]);
    await stop();
    await view.close();
    await nc.close();
  } finally {
    await node.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
