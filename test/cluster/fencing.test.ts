import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendStep, readAll } from "../../node/journal.js";
import { ensureStreams } from "../../node/streams.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import type { StepRecord } from "../../protocol/records.js";
import { createSubjects, parseActorAddress } from "../../protocol/subjects.js";
import { startNatsCluster, type NatsCluster } from "../support/nats-cluster.js";

const subjects = createSubjects();
let cluster: NatsCluster;
const conns: NatsConnection[] = [];

beforeAll(async () => {
  cluster = await startNatsCluster(3);
  const nc = await connect({ servers: cluster.urls });
  conns.push(nc);
  await ensureStreams(await jetstreamManager(nc), subjects, { replicas: 3, shards: 4 });
  // One writer connection per server, so appends race through different routes.
  for (const url of cluster.urls) conns.push(await connect({ servers: [url] }));
}, 120_000);
afterAll(async () => {
  for (const c of conns) await c.close().catch(() => undefined);
  await cluster?.[Symbol.asyncDispose]();
});

function record(actor: string, step: number, writer: string): StepRecord {
  return {
    v: 1, actor, step, seq: step, kind: "event", event: { type: "X", writer }, outcome: "ok", value: "s", status: "active",
    snapshot: { writer }, timers: {}, calls: {}, effects: [], version: "1", epoch: 1, node: writer, time: Date.now(),
  };
}

/** Appends step `step` after `prevSeq` as `writer`, retrying unavailability with the same step id. */
async function tryAppend(nc: NatsConnection, actor: string, step: number, prevSeq: number, writer: string): Promise<number | "fenced"> {
  const a = parseActorAddress(actor);
  for (let i = 0; ; i++) {
    try {
      return await appendStep(jetstream(nc), await jetstreamManager(nc), subjects, a, record(actor, step, writer), prevSeq, 2000);
    } catch (err) {
      if (FlowmetalError.is(err, ErrorCode.StaleOwner)) return "fenced";
      if (i > 40) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function check(actor: string, rounds: number, winners: string[]) {
  const nc = conns[0]!;
  const recs: StepRecord[] = [];
  for await (const r of readAll(await jetstreamManager(nc), subjects, parseActorAddress(actor))) recs.push(r.record);
  expect(recs.map((r) => r.step)).toEqual(Array.from({ length: rounds }, (_, i) => i + 1));
  expect(recs.map((r) => r.node)).toEqual(winners);
}

describe("journal fencing on a 3-server R3 stream", () => {
  it("accepts exactly one of six concurrent appends per step, for 200 rounds", { timeout: 240_000 }, async () => {
    const actor = "fence/race";
    let prevSeq = 0;
    const winners: string[] = [];
    for (let step = 1; step <= 200; step++) {
      const writers = Array.from({ length: 6 }, (_, w) => `w${w}`);
      const results = await Promise.all(writers.map((w, i) => tryAppend(conns[1 + (i % 3)]!, actor, step, prevSeq, w)));
      const won = results.map((r, i) => [r, writers[i]!] as const).filter(([r]) => r !== "fenced");
      expect(won.length, `round ${step}: ${JSON.stringify(results)}`).toBe(1);
      prevSeq = won[0]![0] as number;
      winners.push(won[0]![1]);
    }
    await check(actor, 200, winners);
  });

  it("still accepts at most one append per step while the stream leader steps down", { timeout: 240_000 }, async () => {
    const actor = "fence/stepdown";
    let prevSeq = 0;
    const winners: string[] = [];
    let stepdowns = 0;
    for (let step = 1; step <= 120; step++) {
      if (step % 20 === 10) {
        const r = await conns[0]!.request(`$JS.API.STREAM.LEADER.STEPDOWN.${subjects.streams.journal}`, undefined, { timeout: 5000 }).catch(() => undefined);
        if (r) stepdowns++;
      }
      const writers = ["x", "y", "z"];
      const results = await Promise.all(writers.map((w, i) => tryAppend(conns[1 + i]!, actor, step, prevSeq, w)));
      const won = results.map((r, i) => [r, writers[i]!] as const).filter(([r]) => r !== "fenced");
      expect(won.length, `round ${step}: ${JSON.stringify(results)}`).toBe(1);
      prevSeq = won[0]![0] as number;
      winners.push(won[0]![1]);
    }
    expect(stepdowns).toBeGreaterThan(0);
    await check(actor, 120, winners);
  });
});
