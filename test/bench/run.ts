// test/bench/run.ts — the benchmark script (DESIGN.md §8): raw JetStream vs Flowmetal, measured in one run
// against one nats-server that the script starts itself. Not a test: it prints figures and writes them to
// test/bench/results/latest.json.
//
//   npm run bench                      full run (about 1-3 minutes on 2 cores)
//   node dist/test/bench/run.js --quick  smaller counts, to smoke-test the script (results go to a temp file)
//
// Counts can be overridden with BENCH_* variables (see `config` below); BENCH_OUT sets the results file.
//
// What it measures, in order: raw acknowledged publishes (sync and pipelined) and, for reference, the JetStream
// I/O of a step without Flowmetal (skeleton.ts); one actor driven by sequential asks; many actors in parallel
// (live load from another process ×3, live load from this process, and a backlog drained by a fresh node); the
// first step after resume for a short and a long history; memory of a node that took one step for each of many
// actors, before and after they passivate (in a child process run with --expose-gc, so GC can be forced).
// Besides rates it records CPU time of this process and of nats-server per operation, which other load on
// the machine disturbs less than it disturbs rates.
import { execFile, fork, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { RetentionPolicy, StorageType, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { createClient, type Client } from "../../node/client/index.js";
import { readAll, readLast } from "../../node/journal.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { createSubjects, parseActorAddress } from "../../protocol/subjects.js";
import { natsServerBin, startNatsServer } from "../support/nats-server.js";
import { benchCounter } from "./program.js";
import { benchSkeleton } from "./skeleton.js";
import { cpuMeter, cpuPerOp, envCount, fmt, type CpuShare, median, memory, percentile, pipelined, round, table, until, type MemorySample } from "./util.js";

const quick = process.argv.includes("--quick");
const memoryChild = process.argv.includes("--memory-child");
const loadChild = process.argv.includes("--load-child");

const num = (name: string, full: number, small: number) => envCount(`BENCH_${name}`, full, small, quick);

const config = {
  /** Raw JetStream: publishes awaited one by one. */
  rawSync: num("RAW_SYNC", 3_000, 300),
  /** Raw JetStream: publishes per pipelined run (three runs, the median counts). */
  rawPipelined: num("RAW_PIPELINED", 50_000, 5_000),
  /** Publishes in flight when pipelining (raw and Flowmetal alike). */
  window: num("WINDOW", 1_000, 1_000),
  /** Sequential asks to one actor. */
  asks: num("ASKS", 2_000, 200),
  /** Actors in the parallel run, and events per actor. */
  actors: num("ACTORS", 1_000, 200),
  perActor: num("PER_ACTOR", 20, 10),
  /** History lengths for the resume run. */
  resumeShort: num("RESUME_SHORT", 10, 10),
  resumeLong: num("RESUME_LONG", 10_000, 1_000),
  resumeReps: num("RESUME_REPS", 5, 3),
  /** Idle actors for the memory run, and their passivation delay. */
  memActors: num("MEM_ACTORS", 100_000, 5_000),
  memPassivateMs: num("MEM_PASSIVATE_MS", 1_000, 1_000),
};

const subjects = createSubjects();
const INC = new TextEncoder().encode(JSON.stringify({ type: "INC" }));
const inbox = (key: string) => `fm.in.counter.${key}`;
/** Publish options for the load: a long timeout, so a machine busy with other work slows the run instead of failing it. */
const slack = { timeout: 30_000 };

async function logCount(jsm: JetStreamManager): Promise<number> {
  return (await jsm.streams.info(subjects.streams.journal)).state.messages;
}

/** Waits until the journal holds `target` records; returns the time it first saw them. */
async function waitForLog(jsm: JetStreamManager, target: number, what: string, timeoutMs: number): Promise<number> {
  let at = 0;
  await until(async () => {
    const ok = (await logCount(jsm)) >= target;
    if (ok) at = performance.now();
    return ok;
  }, what, timeoutMs, 10);
  return at;
}

// ---------------------------------------------------------------------------------------------------------
// 1. Raw JetStream
// ---------------------------------------------------------------------------------------------------------

async function benchRaw(js: JetStreamClient, jsm: JetStreamManager, url: string) {
  await jsm.streams.add({ name: "BENCH_RAW", subjects: ["bench.raw.>"], storage: StorageType.File, retention: RetentionPolicy.Limits, num_replicas: 1 });
  const subject = (i: number) => `bench.raw.k${i % 1000}`;
  // Warm-up: connections, JIT, the stream's first blocks.
  await pipelined(2_000, config.window, (i) => js.publish(subject(i), INC, slack));

  let t = performance.now();
  for (let i = 0; i < config.rawSync; i++) await js.publish(subject(i), INC, slack);
  const syncPerSec = config.rawSync / ((performance.now() - t) / 1000);

  const runs: number[] = [];
  const cpu = cpuMeter();
  for (let r = 0; r < 3; r++) {
    t = performance.now();
    await pipelined(config.rawPipelined, config.window, (i) => js.publish(subject(i), INC, slack));
    runs.push(config.rawPipelined / ((performance.now() - t) / 1000));
  }
  const pipelinedCpu = cpu();

  // For reference: the same with nats.js default options (async stack traces on), as createNode connects today.
  const ncDefault = await connect({ servers: url, name: "bench-defaults" });
  const jsDefault = jetstream(ncDefault);
  await pipelined(2_000, config.window, (i) => jsDefault.publish(subject(i), INC, slack));
  t = performance.now();
  await pipelined(config.rawPipelined, config.window, (i) => jsDefault.publish(subject(i), INC, slack));
  const defaultsPerSec = config.rawPipelined / ((performance.now() - t) / 1000);
  await ncDefault.close();

  await jsm.streams.delete("BENCH_RAW");
  return {
    payloadBytes: INC.length,
    client: "nats.js, noAsyncTraces: true",
    syncCount: config.rawSync,
    syncPerSec: round(syncPerSec),
    pipelinedCount: config.rawPipelined,
    window: config.window,
    pipelinedRunsPerSec: runs.map((x) => round(x)),
    pipelinedPerSec: round(median(runs)),
    pipelinedCpu,
    pipelinedCpuPerPublish: cpuPerOp(pipelinedCpu, 3 * config.rawPipelined),
    pipelinedDefaultOptionsPerSec: round(defaultsPerSec),
  };
}

// ---------------------------------------------------------------------------------------------------------
// 2. One actor in a loop
// ---------------------------------------------------------------------------------------------------------

async function benchSingle(client: Client) {
  const actor = "counter/solo";
  for (let i = 0; i < 50; i++) await client.ask(actor, { type: "INC" }); // warm-up
  const lat: number[] = [];
  const t = performance.now();
  for (let i = 0; i < config.asks; i++) {
    const s = performance.now();
    await client.ask(actor, { type: "INC" });
    lat.push(performance.now() - s);
  }
  const total = performance.now() - t;
  lat.sort((a, b) => a - b);
  return { asks: config.asks, p50Ms: round(percentile(lat, 50), 2), p99Ms: round(percentile(lat, 99), 2), maxMs: round(lat[lat.length - 1] ?? 0, 2), stepsPerSec: round(config.asks / (total / 1000)) };
}

// ---------------------------------------------------------------------------------------------------------
// 3. Many actors in parallel
// ---------------------------------------------------------------------------------------------------------

/**
 * `actors` × `perActor` events published pipelined to fresh actors `<prefix><i>` while the node runs; timed
 * from the first publish until the journal holds every step. The load comes from a separate process
 * (`separate`, as real senders would) or from this one, which the node then shares its CPU with.
 */
async function benchParallel(url: string, jsm: JetStreamManager, js: JetStreamClient, client: Client, prefix: string, separate: boolean) {
  const { actors, perActor } = config;
  const total = actors * perActor;
  const base = await logCount(jsm);
  let publishMs: number;
  let cpu: () => CpuShare;
  let t0: number;
  if (separate) {
    const load = await startLoadChild(url, inbox(prefix), total);
    cpu = cpuMeter();
    t0 = performance.now();
    publishMs = await load.go();
  } else {
    cpu = cpuMeter();
    t0 = performance.now();
    // Round-robin over the actors, like independent senders would.
    await pipelined(total, config.window, (i) => js.publish(inbox(`${prefix}${i % actors}`), INC, slack));
    publishMs = performance.now() - t0;
  }
  const tDone = await waitForLog(jsm, base + total, `${total} steps`, 300_000);
  const share = cpu();
  const seconds = (tDone - t0) / 1000;
  await checkCount(client, `counter/${prefix}0`, perActor);
  const log = (await jsm.streams.info(subjects.streams.journal)).state;
  return {
    loadGenerator: separate ? "separate process" : "same process as the node",
    actors,
    eventsPerActor: perActor,
    steps: total,
    publishSeconds: round(publishMs / 1000, 2),
    seconds: round(seconds, 2),
    stepsPerSec: round(total / seconds),
    cpu: share,
    cpuPerStep: cpuPerOp(share, total),
    avgRecordBytes: round(log.bytes / Math.max(1, log.messages)),
  };
}

/** Child processes alive right now: killed (by their pid) if the run fails or one of them hangs. */
const children = new Set<ChildProcess>();

function forkChild(args: string[], env: NodeJS.ProcessEnv, execArgv: string[], timeoutMs: number): ChildProcess {
  const child = fork(fileURLToPath(import.meta.url), args, { execArgv, env: { ...process.env, ...env }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
  children.add(child);
  const timer = setTimeout(() => {
    console.error(`bench: child ${args.join(" ")} still running after ${timeoutMs} ms, killing it`);
    child.kill("SIGKILL");
  }, timeoutMs);
  timer.unref();
  child.once("exit", () => {
    clearTimeout(timer);
    children.delete(child);
  });
  return child;
}

/** A child process that publishes the parallel run's events (to `<subjectPrefix><i>`) when told to go; `go()` resolves with its publish time. */
async function startLoadChild(url: string, subjectPrefix: string, total: number): Promise<{ go(): Promise<number> }> {
  const child = forkChild(
    ["--load-child"],
    { BENCH_NATS_URL: url, BENCH_LOAD_SUBJECT: subjectPrefix, BENCH_LOAD_TOTAL: String(total), BENCH_ACTORS: String(config.actors), BENCH_WINDOW: String(config.window) },
    [],
    300_000,
  );
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  const next = () =>
    new Promise<{ ready?: true; publishMs?: number }>((resolvePromise, reject) => {
      child.once("message", (m) => resolvePromise(m as { ready?: true; publishMs?: number }));
      void exited.then((code) => reject(new Error(`bench: load generator exited with code ${String(code)}`)));
    });
  await next();
  return {
    async go() {
      const done = next();
      child.send("go");
      const m = await done;
      await exited;
      return m.publishMs ?? Number.NaN;
    },
  };
}

async function runLoadChild(): Promise<void> {
  const url = process.env.BENCH_NATS_URL;
  const subject = process.env.BENCH_LOAD_SUBJECT;
  const total = Number(process.env.BENCH_LOAD_TOTAL);
  if (!url || !subject || !Number.isInteger(total)) throw new Error("bench: --load-child needs BENCH_NATS_URL, BENCH_LOAD_SUBJECT and BENCH_LOAD_TOTAL");
  const nc = await connect({ servers: url, name: "bench-load", noAsyncTraces: true });
  const js = jetstream(nc);
  const go = new Promise<void>((r) => process.once("message", () => r()));
  process.send?.({ ready: true });
  await go;
  const t0 = performance.now();
  await pipelined(total, config.window, (i) => js.publish(`${subject}${i % config.actors}`, INC, slack));
  process.send?.({ publishMs: performance.now() - t0 });
  await nc.close();
  process.disconnect?.();
}

/**
 * The same load with the events already in the inbox: the node is stopped, the events are published, and a
 * new node is timed from its start until the last step is persisted. Separates the node's own rate from the
 * cost of generating the load in the same process.
 */
async function benchBacklog(url: string, js: JetStreamClient, jsm: JetStreamManager, client: Client, oldNode: FlowmetalNode) {
  const { actors, perActor } = config;
  const total = actors * perActor;
  await oldNode.drain();
  await pipelined(total, config.window, (i) => js.publish(inbox(`q${i % actors}`), INC, slack));
  const base = await logCount(jsm);
  const cpu = cpuMeter();
  const t0 = performance.now();
  const node = await createNode({ servers: url, modules: [benchCounter], name: "bench-backlog" });
  const tDone = await waitForLog(jsm, base + total, `${total} backlog steps`, 300_000);
  const share = cpu();
  const seconds = (tDone - t0) / 1000;
  await checkCount(client, "counter/q0", perActor);
  return { node, result: { actors, eventsPerActor: perActor, steps: total, seconds: round(seconds, 2), stepsPerSec: round(total / seconds), cpu: share, cpuPerStep: cpuPerOp(share, total) } };
}

async function checkCount(client: Client, actor: string, expected: number): Promise<void> {
  const view = await client.get(actor);
  const n = (view.context as { n?: number } | null)?.n;
  if (n !== expected) throw new Error(`bench: ${actor} counted ${String(n)}, expected ${expected}`);
}

// ---------------------------------------------------------------------------------------------------------
// 4. Resume time vs history length
// ---------------------------------------------------------------------------------------------------------

async function buildHistory(js: JetStreamClient, jsm: JetStreamManager, key: string, steps: number): Promise<number> {
  const t = performance.now();
  await pipelined(steps, config.window, () => js.publish(inbox(key), INC, slack));
  const a = parseActorAddress(`counter/${key}`);
  await until(async () => ((await readLast(jsm, subjects, a))?.record.step ?? 0) >= steps, `${steps} steps of ${key}`, 600_000, 25);
  return (performance.now() - t) / 1000;
}

async function timedAsk(client: Client, actor: string, expectStep: number): Promise<number> {
  const t = performance.now();
  const r = await client.ask(actor, { type: "INC" });
  const ms = performance.now() - t;
  if (r.step !== expectStep) throw new Error(`bench: ${actor} took step ${r.step}, expected ${expectStep}`);
  return ms;
}

async function benchResume(url: string, js: JetStreamClient, jsm: JetStreamManager, client: Client, oldNode: FlowmetalNode) {
  const short = config.resumeShort;
  const long = config.resumeLong;
  const buildLongSec = await buildHistory(js, jsm, "rlong", long);
  await buildHistory(js, jsm, "rshort", short);
  await buildHistory(js, jsm, "rwarm", 1);
  await oldNode.drain();

  const tStart = performance.now();
  const node = await createNode({ servers: url, modules: [benchCounter], passivateAfterMs: 300, name: "bench-resume" });
  const nodeStartMs = performance.now() - tStart;
  let stepShort = short;
  let stepLong = long;
  try {
    // A fresh node: warm its code paths on a third actor, then the first step of each.
    await timedAsk(client, "counter/rwarm", 2);
    const freshShort = await timedAsk(client, "counter/rshort", ++stepShort);
    const freshLong = await timedAsk(client, "counter/rlong", ++stepLong);
    const warmShort: number[] = [];
    const warmLong: number[] = [];
    const coldShort: number[] = [];
    const coldLong: number[] = [];
    for (let r = 0; r < config.resumeReps; r++) {
      await until(() => node.activeActors() === 0, "passivation", 10_000, 20);
      // Alternate which goes first, so neither always meets a colder process.
      if (r % 2 === 0) {
        coldShort.push(await timedAsk(client, "counter/rshort", ++stepShort));
        coldLong.push(await timedAsk(client, "counter/rlong", ++stepLong));
      } else {
        coldLong.push(await timedAsk(client, "counter/rlong", ++stepLong));
        coldShort.push(await timedAsk(client, "counter/rshort", ++stepShort));
      }
      warmShort.push(await timedAsk(client, "counter/rshort", ++stepShort));
      warmLong.push(await timedAsk(client, "counter/rlong", ++stepLong));
    }
    // What resume reads (one record) against what a replay would read (the whole history).
    const lastShort: number[] = [];
    const lastLong: number[] = [];
    for (let r = 0; r < 5; r++) {
      let t = performance.now();
      await readLast(jsm, subjects, parseActorAddress("counter/rshort"));
      lastShort.push(performance.now() - t);
      t = performance.now();
      await readLast(jsm, subjects, parseActorAddress("counter/rlong"));
      lastLong.push(performance.now() - t);
    }
    let t = performance.now();
    let records = 0;
    for await (const _ of readAll(jsm, subjects, parseActorAddress("counter/rlong"))) records++;
    const readAllLongMs = performance.now() - t;
    return {
      node,
      result: {
        shortSteps: short,
        longSteps: long,
        buildLongSeconds: round(buildLongSec, 2),
        buildLongStepsPerSec: round(long / buildLongSec),
        nodeStartMs: round(nodeStartMs, 1),
        freshNodeFirstAskMs: { short: round(freshShort, 2), long: round(freshLong, 2) },
        passivatedResumeAskMedianMs: { short: round(median(coldShort), 2), long: round(median(coldLong), 2) },
        residentAskMedianMs: { short: round(median(warmShort), 2), long: round(median(warmLong), 2) },
        readLastMedianMs: { short: round(median(lastShort), 2), long: round(median(lastLong), 2) },
        readAllLong: { records, ms: round(readAllLongMs, 1) },
        reps: config.resumeReps,
      },
    };
  } catch (err) {
    await node.drain();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------------------
// 5. Memory with many idle actors (own process, run with --expose-gc)
// ---------------------------------------------------------------------------------------------------------

interface MemoryResult {
  actors: number;
  passivateAfterMs: number;
  gcForced: boolean;
  createSeconds: number;
  createStepsPerSec: number;
  baseline: MemorySample;
  peakDuringCreate: MemorySample & { activeActors: number };
  afterSteps: MemorySample & { activeActors: number };
  afterPassivation: MemorySample & { activeActors: number; waitedMs: number };
  residentBytesPerActor: number | null;
  bytesPerPassivatedActor: number;
}

async function runMemoryChild(): Promise<void> {
  const url = process.env.BENCH_NATS_URL;
  if (!url) throw new Error("bench: --memory-child needs BENCH_NATS_URL");
  const n = config.memActors;
  const nc = await connect({ servers: url, name: "bench-memory" });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  const node = await createNode({ servers: url, modules: [benchCounter], passivateAfterMs: config.memPassivateMs, name: "bench-memory" });
  let sampler: NodeJS.Timeout | undefined;
  try {
    await new Promise((r) => setTimeout(r, 200));
    const baseline = memory();
    const base = await logCount(jsm);
    let peak = { ...memory(false), activeActors: 0 };
    sampler = setInterval(() => {
      const a = node.activeActors();
      if (a > peak.activeActors) peak = { ...memory(false), activeActors: a };
    }, 250);
    const t0 = performance.now();
    await pipelined(n, config.window, (i) => js.publish(inbox(`m${i}`), INC, slack));
    const tDone = await waitForLog(jsm, base + n, `${n} actors created`, 600_000);
    clearInterval(sampler);
    const createSeconds = (tDone - t0) / 1000;
    const afterSteps = { ...memory(), activeActors: node.activeActors() };
    const tw = performance.now();
    await until(() => node.activeActors() === 0, "all actors passivated", 120_000, 50);
    const waitedMs = performance.now() - tw;
    await new Promise((r) => setTimeout(r, 200));
    const afterPassivation = { ...memory(), activeActors: node.activeActors(), waitedMs: round(waitedMs) };
    const result: MemoryResult = {
      actors: n,
      passivateAfterMs: config.memPassivateMs,
      gcForced: typeof (globalThis as { gc?: unknown }).gc === "function",
      createSeconds: round(createSeconds, 2),
      createStepsPerSec: round(n / createSeconds),
      baseline,
      peakDuringCreate: peak,
      afterSteps,
      afterPassivation,
      residentBytesPerActor: afterSteps.activeActors > 0 ? round(((afterSteps.heapUsedMiB - afterPassivation.heapUsedMiB) * 1024 * 1024) / afterSteps.activeActors) : null,
      bytesPerPassivatedActor: round(((afterPassivation.heapUsedMiB - baseline.heapUsedMiB) * 1024 * 1024) / n, 1),
    };
    process.send?.(result);
  } finally {
    clearInterval(sampler);
    await node.drain();
    await nc.close();
  }
}

function benchMemory(url: string): Promise<MemoryResult> {
  return new Promise((resolvePromise, reject) => {
    const child = forkChild(["--memory-child", ...(quick ? ["--quick"] : [])], { BENCH_NATS_URL: url }, ["--expose-gc"], 600_000);
    let result: MemoryResult | undefined;
    child.on("message", (m) => (result = m as MemoryResult));
    child.on("error", reject);
    child.on("exit", (code) => (result && code === 0 ? resolvePromise(result) : reject(new Error(`bench: memory run exited with code ${String(code)}`))));
  });
}

// ---------------------------------------------------------------------------------------------------------

function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, "package.json"))) {
    const up = dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
  return dir;
}

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = loadavg().map((x) => round(x, 2));
  const serverVersion = (await promisify(execFile)(natsServerBin, ["--version"])).stdout.trim();
  console.log(`Flowmetal benchmark${quick ? " (--quick)" : ""}: ${serverVersion}, node ${process.version}, ${cpus().length} cores`);
  await using server = await startNatsServer();
  let nc: NatsConnection | undefined;
  let client: Client | undefined;
  let node: FlowmetalNode | undefined;
  try {
    // The load generator uses the cheapest client settings: by default nats.js builds two Error objects (with
    // stack traces) per request, about a third of its CPU per publish (see the "default options" row).
    nc = await connect({ servers: server.url, name: "bench", noAsyncTraces: true });
    const js = jetstream(nc);
    const jsm = await jetstreamManager(nc);

    console.log("1/5 raw JetStream publishes…");
    const raw = await benchRaw(js, jsm, server.url);
    const skeletonOptions = { keys: config.actors, perKey: config.perActor, partitions: 16, recordBytes: 440, window: config.window, maxInFlight: 512 };
    const skeleton = await benchSkeleton(server.url, js, jsm, skeletonOptions);
    // The same with the load from another process, as in the live Flowmetal runs: what the pattern allows on this machine.
    const skeletonLive = await benchSkeleton(server.url, js, jsm, {
      ...skeletonOptions,
      live: async (subjectPrefix) => {
        const load = await startLoadChild(server.url, subjectPrefix, skeletonOptions.keys * skeletonOptions.perKey);
        return () => load.go();
      },
    });

    node = await createNode({ servers: server.url, modules: [benchCounter], name: "bench" });
    client = await createClient({ servers: server.url });
    console.log("2/5 one actor, sequential asks…");
    const single = await benchSingle(client);
    console.log("3/5 many actors in parallel (live load, then a backlog)…");
    // Warm the node's code paths for many actors, then three measured runs with the load from another process.
    await pipelined(2_000, config.window, (i) => js.publish(inbox(`w${i % 200}`), INC, slack));
    await until(async () => (await jsm.streams.info(subjects.streams.inbox)).state.messages === 0, "warm-up steps", 60_000);
    const parallelRuns: Awaited<ReturnType<typeof benchParallel>>[] = [];
    for (const prefix of ["pa", "pb", "pc"]) parallelRuns.push(await benchParallel(server.url, jsm, js, client, prefix, true));
    const parallel = [...parallelRuns].sort((a, b) => a.stepsPerSec - b.stepsPerSec)[1]!;
    const parallelSame = await benchParallel(server.url, jsm, js, client, "s", false);
    const backlogged = await benchBacklog(server.url, js, jsm, client, node);
    node = backlogged.node;
    const backlog = backlogged.result;
    console.log("4/5 resume vs history length…");
    const resumed = await benchResume(server.url, js, jsm, client, node);
    node = resumed.node;
    const resume = resumed.result;
    await node.drain(); // the memory run starts its own node on the same streams
    node = undefined;
    console.log("5/5 memory with idle actors (child process, --expose-gc)…");
    const mem = await benchMemory(server.url);

    const ratioParallel = parallel.stepsPerSec / raw.pipelinedPerSec;
    const ratioSame = parallelSame.stepsPerSec / raw.pipelinedPerSec;
    const ratioBacklog = backlog.stepsPerSec / raw.pipelinedPerSec;
    const ratioSkeleton = skeleton.stepsPerSec / raw.pipelinedPerSec;
    const ratioSkeletonLive = skeletonLive.stepsPerSec / raw.pipelinedPerSec;
    const ratioSingle = single.stepsPerSec / raw.syncPerSec;
    const pct = (x: number) => `${fmt(x * 100, 1)}%`;
    const cpuText = (c: CpuShare, ops: number) => {
      const per = cpuPerOp(c, ops);
      return `${fmt(c.processPct)}% / ${c.serverPct === null ? "n/a" : `${fmt(c.serverPct)}%`}   ${fmt(per.processUs)} / ${per.serverUs === null ? "n/a" : fmt(per.serverUs)} µs`;
    };
    table(`Raw JetStream (file storage, R1, ${raw.payloadBytes}-byte payload, ${raw.client})`, [
      ["", "count", "msgs/s", "CPU bench / server, per publish"],
      ["sync publish (await each)", fmt(raw.syncCount), fmt(raw.syncPerSec), ""],
      [`pipelined (${raw.window} in flight), median of 3`, fmt(raw.pipelinedCount), fmt(raw.pipelinedPerSec), cpuText(raw.pipelinedCpu, 3 * raw.pipelinedCount)],
      ["  runs", "", raw.pipelinedRunsPerSec.map((x) => fmt(x)).join(" / "), ""],
      ["  same with nats.js default options (reference)", fmt(raw.pipelinedCount), fmt(raw.pipelinedDefaultOptionsPerSec), ""],
    ]);
    table("Flowmetal: one actor, sequential ask", [
      ["asks", "p50 ms", "p99 ms", "max ms", "steps/s", "÷ raw sync"],
      [fmt(single.asks), fmt(single.p50Ms, 2), fmt(single.p99Ms, 2), fmt(single.maxMs, 2), fmt(single.stepsPerSec), pct(ratioSingle)],
    ]);
    table(`Flowmetal: ${fmt(parallel.actors)} actors in parallel, ${parallel.eventsPerActor} events each (${fmt(parallel.steps)} steps, publishes pipelined ${config.window} in flight)`, [
      ["", "publish s", "total s", "steps/s", "÷ raw pipelined", "CPU node / server, per step"],
      ["live, load from another process (median of 3)", fmt(parallel.publishSeconds, 2), fmt(parallel.seconds, 2), fmt(parallel.stepsPerSec), `${pct(ratioParallel)} (target ≥ 40%, ceiling 50%)`, cpuText(parallel.cpu, parallel.steps)],
      ["  runs", "", "", parallelRuns.map((r) => fmt(r.stepsPerSec)).join(" / "), "", ""],
      ["live, load from the node's process", fmt(parallelSame.publishSeconds, 2), fmt(parallelSame.seconds, 2), fmt(parallelSame.stepsPerSec), pct(ratioSame), cpuText(parallelSame.cpu, parallelSame.steps)],
      ["backlog: events queued first, from node start", "", fmt(backlog.seconds, 2), fmt(backlog.stepsPerSec), pct(ratioBacklog), cpuText(backlog.cpu, backlog.steps)],
      ["reference: a step's JetStream I/O alone, live", "", fmt(skeletonLive.seconds, 2), fmt(skeletonLive.stepsPerSec), pct(ratioSkeletonLive), cpuText(skeletonLive.cpu, skeletonLive.steps)],
      ["reference: a step's JetStream I/O alone, backlog", "", fmt(skeleton.seconds, 2), fmt(skeleton.stepsPerSec), pct(ratioSkeleton), cpuText(skeleton.cpu, skeleton.steps)],
      [`journal record size: ${fmt(parallel.avgRecordBytes)} bytes on average`, "", "", "", "", ""],
    ]);
    table(`Flowmetal: resume vs history length (${resume.reps} passivation cycles, medians)`, [
      ["", `${fmt(resume.shortSteps)} steps`, `${fmt(resume.longSteps)} steps`],
      ["first ask on a fresh node, ms", fmt(resume.freshNodeFirstAskMs.short, 2), fmt(resume.freshNodeFirstAskMs.long, 2)],
      ["ask after passivation, ms", fmt(resume.passivatedResumeAskMedianMs.short, 2), fmt(resume.passivatedResumeAskMedianMs.long, 2)],
      ["ask while resident, ms", fmt(resume.residentAskMedianMs.short, 2), fmt(resume.residentAskMedianMs.long, 2)],
      ["readLast (what resume reads), ms", fmt(resume.readLastMedianMs.short, 2), fmt(resume.readLastMedianMs.long, 2)],
      ["readAll (a full replay would read), ms", "", `${fmt(resume.readAllLong.ms, 1)} (${fmt(resume.readAllLong.records)} records)`],
      ["node start, ms", fmt(resume.nodeStartMs, 1), ""],
      [`building ${fmt(resume.longSteps)} steps of one actor`, "", `${fmt(resume.buildLongSeconds, 2)} s (${fmt(resume.buildLongStepsPerSec)} steps/s)`],
    ]);
    table(`Flowmetal: memory, ${fmt(mem.actors)} actors with one step each, passivateAfterMs ${mem.passivateAfterMs}${mem.gcForced ? ", GC forced" : ", no GC"}`, [
      ["", "heapUsed MiB", "RSS MiB", "activeActors"],
      ["node started, before", fmt(mem.baseline.heapUsedMiB, 1), fmt(mem.baseline.rssMiB, 1), "0"],
      ["peak during creation (no GC)", fmt(mem.peakDuringCreate.heapUsedMiB, 1), fmt(mem.peakDuringCreate.rssMiB, 1), fmt(mem.peakDuringCreate.activeActors)],
      ["all steps persisted", fmt(mem.afterSteps.heapUsedMiB, 1), fmt(mem.afterSteps.rssMiB, 1), fmt(mem.afterSteps.activeActors)],
      [`after passivation (+${fmt(mem.afterPassivation.waitedMs)} ms)`, fmt(mem.afterPassivation.heapUsedMiB, 1), fmt(mem.afterPassivation.rssMiB, 1), fmt(mem.afterPassivation.activeActors)],
      ["creation", `${fmt(mem.createSeconds, 2)} s`, `${fmt(mem.createStepsPerSec)} steps/s`, ""],
      ["heap per resident actor / per passivated actor", mem.residentBytesPerActor === null ? "n/a" : `${fmt(mem.residentBytesPerActor)} B`, `${fmt(mem.bytesPerPassivatedActor, 1)} B`, ""],
    ]);
    const ratios = {
      parallelStepsPerRawPipelined: round(ratioParallel, 3),
      parallelSameProcessStepsPerRawPipelined: round(ratioSame, 3),
      backlogStepsPerRawPipelined: round(ratioBacklog, 3),
      stepIoSkeletonPerRawPipelined: round(ratioSkeleton, 3),
      stepIoSkeletonLivePerRawPipelined: round(ratioSkeletonLive, 3),
      livePerStepIoSkeletonLive: round(parallel.stepsPerSec / skeletonLive.stepsPerSec, 3),
      backlogPerStepIoSkeleton: round(backlog.stepsPerSec / skeleton.stepsPerSec, 3),
      singleStepsPerRawSync: round(ratioSingle, 3),
      target: 0.4,
      ceiling: 0.5,
    };
    console.log(
      `\nsteps/s ÷ raw pipelined publishes/s: live ${pct(ratioParallel)} (load in the node's process ${pct(ratioSame)}, backlog ${pct(ratioBacklog)}) (target ≥ 40%, ceiling 50%); one actor ÷ raw sync: ${pct(ratioSingle)}`,
    );

    const results = {
      date: new Date().toISOString(),
      quick,
      env: { nats: serverVersion, node: process.version, platform: `${process.platform}-${process.arch}`, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? "", memGiB: round(totalmem() / 1024 ** 3, 1), loadAvgBefore: loadBefore, loadAvgAfter: loadavg().map((x) => round(x, 2)) },
      config,
      raw,
      single,
      parallel,
      parallelRunsStepsPerSec: parallelRuns.map((r) => r.stepsPerSec),
      parallelSameProcess: parallelSame,
      stepIoSkeleton: skeleton,
      stepIoSkeletonLive: skeletonLive,
      backlog,
      resume,
      memory: mem,
      ratios,
      durationSeconds: round((performance.now() - started) / 1000, 1),
    };
    const out = process.env.BENCH_OUT ?? (quick ? join(tmpdir(), "flowmetal-bench-quick.json") : join(repoRoot(), "test", "bench", "results", "latest.json"));
    await mkdir(dirname(resolve(out)), { recursive: true });
    await writeFile(out, JSON.stringify(results, null, 2) + "\n");
    console.log(`Wrote ${out} (${results.durationSeconds} s; load average before ${loadBefore.join(" ")}, after ${results.env.loadAvgAfter.join(" ")})`);
  } finally {
    for (const child of children) child.kill("SIGKILL");
    await node?.drain().catch(() => undefined);
    await client?.close().catch(() => undefined);
    await nc?.close().catch(() => undefined);
  }
}

if (memoryChild || loadChild) {
  (memoryChild ? runMemoryChild() : runLoadChild()).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  main().then(
    () => {
      // Everything is closed; this only guards against a stray handle keeping a finished benchmark alive.
      setTimeout(() => {
        console.error("bench: a handle kept the process alive after closing; exiting");
        process.exit(0);
      }, 5_000).unref();
    },
    (err: unknown) => {
      console.error(err);
      process.exit(1);
    },
  );
}
