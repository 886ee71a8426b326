// test/chaos/crash-matrix.test.ts — 200 actors under every failpoint at once plus SIGKILLs from outside, on one node and on two, then I1–I7.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { describe, it, type ExpectStatic } from "vitest";
import { createClient } from "../../node/client/index.js";
import { createSubjects } from "../../protocol/subjects.js";
import { workerAckWaitMs } from "../../protocol/worker.js";
import { acctExpectation, createAcctWorkload, sendRound, workloadActors } from "../support/acct-workload.js";
import { awaitLiveness, checkInvariants, readSink } from "../support/invariants.js";
import { startNatsServer } from "../support/nats-server.js";
import { spawnNode, superviseNode } from "../support/node-process.js";
import { waitFor } from "../support/wait.js";

const fixture = "test/fixtures/crash-programs.ts";
const subjects = createSubjects();

/** Inputs waiting in the inbox (every shard). */
async function inboxBacklog(jsm: JetStreamManager): Promise<number> {
  const info = await jsm.streams.info(subjects.streams.inbox, { subjects_filter: `${subjects.prefix}.inbox.>` });
  return Object.values(info.state.subjects ?? {}).reduce((n, c) => n + c, 0);
}

/** How long faults are injected. */
const faultsMs = Number(process.env.FLOWMETAL_CHAOS_MS ?? 60_000);
/** Every failpoint armed at once; a step passes three of them, a call one. */
const failpoints = "before-append=0.0005,after-append=0.0005,before-ack=0.0005,mid-call=0.003";
/** Cluster nodes: a restarted node takes the dead one's shards over once its heartbeat expires. */
const heartbeatTtlMs = 2_000;
/**
 * I7's bound once faults stop: the shards are taken over after the heartbeat TTL, and a call a dead worker
 * had taken comes back after the function consumer's ack_wait — the default here (see test/node/crash.test.ts).
 */
const livenessBoundMs = heartbeatTtlMs + workerAckWaitMs + 30_000;

interface ChaosOptions {
  /** Nodes running at once, each restarted whenever it dies. */
  nodes: number;
  actors: number;
  label: string;
}

async function chaos(expect: ExpectStatic, o: ChaosOptions): Promise<void> {
  const started = Date.now();
  await using nats = await startNatsServer();
  const nc = await connect({ servers: nats.url });
  await using _nc = { [Symbol.asyncDispose]: () => nc.close() };
  const jsm = await jetstreamManager(nc);
  const fm = await createClient({ nc, timeoutMs: 2_000 });
  const dir = await mkdtemp(join(tmpdir(), "fm-chaos-"));
  await using _dir = { [Symbol.asyncDispose]: () => rm(dir, { recursive: true, force: true }) };
  const sink = join(dir, "sink.jsonl");
  const w = createAcctWorkload(o.actors, "c");
  const actors = workloadActors(w);
  const done = acctExpectation(w);
  const logFile = process.env.FLOWMETAL_CHAOS_LOG;

  const sups = Array.from({ length: o.nodes }, (_, i) =>
    superviseNode(nats.url, [fixture], { name: `${o.label}-${String.fromCharCode(97 + i)}`, heartbeatTtlMs, failpoints, env: { FLOWMETAL_SINK: sink }, ...(logFile ? { logFile } : {}) }),
  );
  let faulting = true;
  let stopKiller!: () => void;
  const killerStopped = new Promise<void>((r) => (stopKiller = r));
  // Outside SIGKILLs at random moments, on top of the failpoints: whatever the node is doing.
  const killer = (async () => {
    while (faulting) {
      await Promise.race([new Promise((r) => setTimeout(r, 4_000 + Math.random() * 8_000)), killerStopped]);
      if (faulting) await sups[Math.floor(Math.random() * sups.length)]!.killCurrent();
    }
  })();
  let rounds = 0;
  try {
    while (Date.now() - started < faultsMs) {
      await sendRound(fm, w, rounds++, 3);
      // Keep the inbox backlog small: faults should strike steps, not a queue hours long.
      await waitFor(async () => (await inboxBacklog(jsm)) < 300, { timeoutMs: 20_000, intervalMs: 100 }).catch(() => undefined);
    }
  } finally {
    faulting = false;
    stopKiller();
    await killer;
    await Promise.all(sups.map((s) => s.stop()));
  }
  const sum = (f: (s: (typeof sups)[number]) => number) => sups.reduce((n, s) => n + f(s), 0);
  expect(sups.flatMap((s) => s.unexpectedExits), "a node exited other than by SIGKILL").toEqual([]);
  expect(sum((s) => s.crashes), "no failpoint fired").toBeGreaterThan(0);
  expect(sum((s) => s.kills), "no outside SIGKILL landed").toBeGreaterThan(0);

  // Faults stop: one node without failpoints must bring every actor to its end state (I7).
  await using clean = await spawnNode(nats.url, [fixture], { name: `${o.label}-clean`, heartbeatTtlMs, env: { FLOWMETAL_SINK: sink } });
  const live = await awaitLiveness(jsm, actors, done, livenessBoundMs);
  expect(live.stuck, `I7: actors stuck ${live.ms} ms after faults stopped:\n  ${live.stuck.join("\n  ")}`).toEqual([]);

  const report = await checkInvariants(jsm, actors, w.acked, { sink: await readSink(sink), quiescent: true });
  for (const [inv, list] of Object.entries(report.violations)) {
    expect(list, `${inv} violated:\n  ${list.join("\n  ")}`).toEqual([]);
  }
  expect(report.results).toBe(report.calls);
  console.info(
    `[chaos ${o.label}] ${o.nodes} node(s), ${rounds} rounds, ${sum((s) => s.crashes)} failpoint crashes, ${sum((s) => s.kills)} outside kills, ` +
      `${sum((s) => s.started)} incarnations, ${report.steps} steps (${JSON.stringify(report.stepsByKind)}), ${report.emitted} emitted, ` +
      `${report.executions} executions (${report.repeatedExecutions} repeated), ${w.retries} send retries; ` +
      `live ${live.ms} ms after faults stopped; ${Date.now() - started} ms in all`,
  );
}

describe.concurrent("crash matrix", () => {
  it("keeps I1–I7 when every failpoint and outside SIGKILLs strike 200 actors on one node", async ({ expect }) => {
    await chaos(expect, { nodes: 1, actors: 200, label: "solo" });
  });

  it("keeps I1–I7 when every failpoint and outside SIGKILLs strike 200 actors on two nodes that fail over and hand shards back", async ({ expect }) => {
    await chaos(expect, { nodes: 2, actors: 200, label: "pair" });
  });
});
