// test/bench/cluster.ts — cluster benchmark on a 3-server R3 cluster: steps/s vs raw R3 publishes, handoff pause, failover time.
import { mkdir, writeFile } from "node:fs/promises";
import { performance } from "node:perf_hooks";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, headers } from "@nats-io/transport-node";
import { createClusterNode, type ClusterNode } from "../../cluster/index.js";
import { createClient } from "../../node/client/index.js";
import { createLogger } from "../../node/logger.js";
import { noMetrics, type Metrics } from "../../protocol/metrics.js";
import { shardOf } from "../../protocol/subjects.js";
import { startNatsCluster } from "../support/nats-cluster.js";
import { spawnNode } from "../support/node-process.js";
import { benchCounter } from "./program.js";
import { fmt, percentile, pipelined, round, table, until } from "./util.js";

const quick = process.argv.includes("--quick");
const RAW = quick ? 5_000 : 20_000;
const ACTORS = quick ? 200 : 500;
const PER_ACTOR = quick ? 5 : 20;
const MOVES = quick ? 6 : 20;
const SHARDS = 12;

async function main(): Promise<void> {
  const started = Date.now();
  await using cluster = await startNatsCluster(3);
  const nc = await connect({ servers: cluster.urls, noAsyncTraces: true });
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);

  // Raw: pipelined acknowledged publishes to an R3 stream, as many in flight as the Flowmetal run uses.
  await jsm.streams.add({ name: "RAW3", subjects: ["raw3.>"], num_replicas: 3 });
  const payload = '{"type":"INC"}';
  let t0 = performance.now();
  await pipelined(RAW, 1000, (i) => js.publish(`raw3.k${i % 1000}`, payload));
  const rawPerSec = RAW / ((performance.now() - t0) / 1000);
  await jsm.streams.delete("RAW3");

  // Three cluster nodes in this process (each with its own connection); pauses reported through metrics.
  const pauses: number[] = [];
  const metrics: Metrics = { ...noMetrics, handoff: (ms) => pauses.push(ms) };
  const nodes: ClusterNode[] = [];
  for (const name of ["bench-a", "bench-b", "bench-c"]) {
    nodes.push(await createClusterNode({ servers: cluster.urls, name, modules: [benchCounter], shards: SHARDS, replicas: 3, heartbeatTtlMs: 3000, metrics, ...(process.env.BENCH_LOG ? { log: createLogger({ level: process.env.BENCH_LOG }) } : {}) }));
  }
  await using fm = await createClient({ servers: cluster.urls });
  /** Waits until every shard is owned by one of `who` and the ownership stays put for a second. */
  const settle = async (who: string[]) => {
    let last = "";
    let stableSince = Date.now();
    await until(async () => {
      const v = await fm.cluster();
      const now = JSON.stringify(v.owners.map((o) => [o.node, o.epoch]));
      if (now !== last) {
        last = now;
        stableSince = Date.now();
      }
      const ok = v.owners.every((o) => o.node !== null && who.includes(o.node)) && who.every((n) => v.owners.some((o) => o.node === n));
      return ok && Date.now() - stableSince > 1000;
    }, `ownership settled on ${who.join(", ")}`, 60_000, 100);
  };
  await settle(nodes.map((n) => n.name));

  let done = 0;
  const sub = nc.subscribe("fm.state.>", { callback: () => void done++ });
  const h = headers();
  h.set("Content-Type", "application/json");
  const total = ACTORS * PER_ACTOR;
  t0 = performance.now();
  await pipelined(total, 1000, (i) => js.publish(`fm.in.counter.c${i % ACTORS}`, payload, { headers: h }));
  await until(() => done >= total, "all steps", 300_000, 10);
  const stepsPerSec = total / ((performance.now() - t0) / 1000);
  sub.unsubscribe();

  // Handoff: move shards back and forth while events keep arriving; pause = drain start → new owner running.
  let stop = false;
  let sent = 0;
  const pump = (async () => {
    while (!stop) {
      await js.publish(`fm.in.counter.c${sent % ACTORS}`, payload, { headers: h });
      sent++;
    }
  })();
  pauses.length = 0; // only the moves below, not the rebalancing as nodes joined
  const owners = new Map((await fm.cluster()).owners.map((o) => [o.shard, o.node!]));
  const names = nodes.map((n) => n.name);
  for (let i = 0; i < MOVES; i++) {
    const shard = i % SHARDS;
    const from = owners.get(shard)!;
    const to = names.find((n) => n !== from)!;
    await fm.move(String(shard), to);
    owners.set(shard, to);
  }
  stop = true;
  await pump;
  pauses.sort((a, b) => a - b);

  for (const n of nodes) await n.close();

  // Failover: two node processes, kill -9 one, time until an actor of its shards takes a step elsewhere.
  const ttl = 2000;
  const procA = await spawnNode(cluster.url, ["dist/test/bench/program.js"], { name: "fo-a", heartbeatTtlMs: ttl });
  const procB = await spawnNode(cluster.url, ["dist/test/bench/program.js"], { name: "fo-b", heartbeatTtlMs: ttl });
  await settle(["fo-a", "fo-b"]);
  const bShards = new Set((await fm.cluster()).owners.filter((o) => o.node === "fo-b").map((o) => o.shard));
  const probe = Array.from({ length: 1000 }, (_, i) => `p${i}`).find((k) => bShards.has(shardOf({ program: "counter", key: k } as never, SHARDS)))!;
  await procB.kill("SIGKILL");
  const killedAt = performance.now();
  await js.publish(`fm.in.counter.${probe}`, payload, { headers: h });
  await until(async () => (await fm.get(`counter/${probe}`).catch(() => undefined))?.step === 1, "probe step after failover", 30_000, 10);
  const failoverMs = performance.now() - killedAt;
  await procA.kill("SIGKILL");
  await nc.close();

  const results = {
    date: new Date().toISOString(),
    quick,
    servers: 3,
    replicas: 3,
    raw: { publishes: RAW, window: 1000, perSec: round(rawPerSec) },
    cluster: { nodes: 3, actors: ACTORS, steps: total, stepsPerSec: round(stepsPerSec), ratio: round(stepsPerSec / rawPerSec, 3) },
    handoff: { moves: MOVES, eventsDuringMoves: sent, pauseP50Ms: round(percentile(pauses, 50), 1), pauseP99Ms: round(percentile(pauses, 99), 1), samples: pauses.length },
    failover: { heartbeatTtlMs: ttl, ms: round(failoverMs), targetMs: ttl + 2000 },
    seconds: round((Date.now() - started) / 1000, 1),
  };
  table("Cluster: 3 nats-servers (R3, sync_interval always), 3 Flowmetal nodes", [
    ["", "value", "ratio / target"],
    ["raw R3 pipelined publishes/s", fmt(results.raw.perSec), ""],
    [`cluster steps/s (${ACTORS} actors × ${PER_ACTOR})`, fmt(results.cluster.stepsPerSec), `${fmt(results.cluster.ratio * 100, 1)}% of raw R3`],
    [`handoff pause p50 / p99 (${pauses.length} moves under load)`, `${fmt(results.handoff.pauseP50Ms, 1)} / ${fmt(results.handoff.pauseP99Ms, 1)} ms`, "p50 < 100 ms"],
    [`failover after kill -9 (TTL ${ttl} ms)`, `${fmt(results.failover.ms)} ms`, `< ${ttl + 2000} ms`],
  ]);
  const out = process.env.BENCH_OUT ?? (quick ? "/tmp/flowmetal-bench-cluster-quick.json" : "test/bench/results/cluster.json");
  await mkdir(out.split("/").slice(0, -1).join("/") || ".", { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`Wrote ${out} (${results.seconds} s)\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  },
);
