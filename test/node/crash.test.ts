// test/node/crash.test.ts — a real node process SIGKILLed at each failpoint of a step, restarted, then checked against I1–I7.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AckPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { describe, it, type ExpectStatic } from "vitest";
import type { FailpointName } from "../../node/failpoints.js";
import { createClient, type Client } from "../../node/client/index.js";
import { readLast } from "../../node/journal.js";
import { functionMetaOf } from "../../node/program.js";
import { ensureStreams } from "../../node/streams.js";
import { workerConsumerName } from "../../protocol/worker.js";
import { createSubjects, parseActorAddress } from "../../protocol/subjects.js";
import { alarmDelayMs, record as recordFunction } from "../fixtures/crash-programs.js";
import { acctExpectation, createAcctWorkload, sendRound, workloadActors } from "../support/acct-workload.js";
import { awaitLiveness, checkInvariants, readSink, type InvariantReport } from "../support/invariants.js";
import { startNatsServer } from "../support/nats-server.js";
import { spawnNode, superviseNode } from "../support/node-process.js";
import { waitFor } from "../support/wait.js";

const fixture = "test/fixtures/crash-programs.ts";
const subjects = createSubjects();
const record = functionMetaOf(recordFunction)!;

/** The failpoints of a step (the host's three) and of a function call, with the crash probability per pass. */
const probability = { "before-append": 0.02, "after-append": 0.02, "before-ack": 0.02, "mid-call": 0.1 } satisfies Partial<Record<FailpointName, number>>;
const points = Object.keys(probability) as (keyof typeof probability)[];

/** Nodes are cluster nodes: a restarted one takes the dead one's shards over once its heartbeat expires. */
const heartbeatTtlMs = 2_000;
/**
 * A call a dead worker had taken comes back only after its consumer's ack_wait: 60 s by default
 * (`workerAckWaitMs`). Workers use the ack_wait of an existing consumer (PROTOCOL.md §5), so these tests
 * create `crash.record`'s consumer first with a short one; the chaos suite keeps the default.
 */
const callAckWaitMs = 4_000;
/** I7's bound once faults stop: shards are taken over after the heartbeat TTL, held calls come back after the ack wait. */
const livenessBoundMs = heartbeatTtlMs + callAckWaitMs + 15_000;

/** Creates the streams and `crash.record`'s consumer, with {@link callAckWaitMs}, before any node runs. */
async function shortenCallAckWait(jsm: JetStreamManager): Promise<void> {
  await ensureStreams(jsm, subjects);
  await jsm.consumers.add(subjects.streams.calls, {
    durable_name: workerConsumerName(record.name),
    ack_policy: AckPolicy.Explicit,
    filter_subject: subjects.call(record.name),
    ack_wait: callAckWaitMs * 1_000_000,
    max_deliver: -1,
    max_ack_pending: 10_000,
  });
}

async function connectAll(url: string): Promise<{ nc: NatsConnection; jsm: JetStreamManager; fm: Client } & AsyncDisposable> {
  const nc = await connect({ servers: url });
  const jsm = await jetstreamManager(nc);
  const fm = await createClient({ nc, timeoutMs: 2_000 });
  return { nc, jsm, fm, [Symbol.asyncDispose]: () => nc.close() };
}

/** Messages in the inbox stream on subjects matching `filter` (stored subjects, e.g. `fm.inbox.*.alarm.a`). */
async function inboxCount(jsm: JetStreamManager, filter: string): Promise<number> {
  const info = await jsm.streams.info(subjects.streams.inbox, { subjects_filter: filter });
  return Object.values(info.state.subjects ?? {}).reduce((n, c) => n + c, 0);
}

/** A temporary directory, removed on dispose. */
async function tempDir(): Promise<{ path: string } & AsyncDisposable> {
  const path = await mkdtemp(join(tmpdir(), "fm-crash-"));
  return { path, [Symbol.asyncDispose]: () => rm(path, { recursive: true, force: true }) };
}

function expectInvariants(expect: ExpectStatic, report: InvariantReport): void {
  for (const [inv, list] of Object.entries(report.violations)) {
    expect(list, `${inv} violated:\n  ${list.join("\n  ")}`).toEqual([]);
  }
}

describe.concurrent("crash recovery", () => {
  for (const point of points) {
    it(`keeps I1–I7 when the node is SIGKILLed at ${point}`, async ({ expect }) => {
      const started = Date.now();
      await using nats = await startNatsServer();
      await using c = await connectAll(nats.url);
      await shortenCallAckWait(c.jsm);
      await using dir = await tempDir();
      const sink = join(dir.path, "sink.jsonl");
      const w = createAcctWorkload(20);
      const actors = workloadActors(w);
      const done = acctExpectation(w);
      const sup = superviseNode(nats.url, [fixture], { name: point, heartbeatTtlMs, failpoints: `${point}=${probability[point]}`, env: { FLOWMETAL_SINK: sink } });
      try {
        // Rounds of 20 actors × 4 events, until the failpoint has killed the node a few times.
        const want = 3;
        for (let round = 0; ; ) {
          await sendRound(c.fm, w, round++, 4);
          if ((round >= 2 && sup.crashes >= want) || round >= 8) break;
          await waitFor(async () => sup.crashes >= want || (await awaitLiveness(c.jsm, actors, done, 0)).stuck.length === 0, { timeoutMs: 15_000, intervalMs: 200 }).catch(() => undefined);
        }
      } finally {
        await sup.stop();
      }
      expect(sup.crashes, `the ${point} failpoint never fired`).toBeGreaterThan(0);
      expect(sup.unexpectedExits, "a node exited other than by SIGKILL").toEqual([]);

      // Faults stop: a node without failpoints must bring every actor to its end state (I7).
      const faultsStopped = Date.now();
      await using clean = await spawnNode(nats.url, [fixture], { name: `${point}-clean`, heartbeatTtlMs, env: { FLOWMETAL_SINK: sink } });
      const live = await awaitLiveness(c.jsm, actors, done, livenessBoundMs);
      expect(live.stuck, `I7: actors stuck ${live.ms} ms after faults stopped:\n  ${live.stuck.join("\n  ")}`).toEqual([]);

      const report = await checkInvariants(c.jsm, actors, w.acked, { sink: await readSink(sink), quiescent: true });
      expectInvariants(expect, report);
      expect(report.calls).toBeGreaterThan(0);
      expect(report.results).toBe(report.calls);
      console.info(
        `[crash ${point}] ${sup.crashes} crashes, ${sup.started} incarnations, ${report.steps} steps (${JSON.stringify(report.stepsByKind)}), ` +
          `${report.emitted} emitted, ${report.executions} executions (${report.repeatedExecutions} repeated), ${w.retries} send retries; ` +
          `live ${Date.now() - faultsStopped} ms after faults stopped; ${Date.now() - started} ms in all`,
      );
    }, 90_000);
  }

  // A node killed after publishing a step's effects but before the ack publishes them again when it comes
  // back; after an outage longer than JetStream's duplicate window (120 s) JetStream stores them again, so the
  // receiving actor drops sends it already took, and emits already on fm.out are not published again (I6).
  // Waiting 2 minutes gives the same result; here the window is shortened while the node is down.
  it("delivers a send and an emit once when the node was down longer than the duplicate window", async ({ expect }) => {
    await using nats = await startNatsServer();
    await using c = await connectAll(nats.url);
    const js = jetstream(c.nc);
    await using first = await spawnNode(nats.url, [fixture], { name: "window-1", heartbeatTtlMs, failpoints: "before-ack=1" });
    await js.publish(subjects.inbox(parseActorAddress("acct/w")), JSON.stringify({ type: "ADD", n: 1, id: "w:1" }), { msgID: "w:1" });
    expect((await first.exited).signal).toBe("SIGKILL");
    expect((await readLast(c.jsm, subjects, parseActorAddress("acct/w")))?.record.step, "the step is persisted").toBe(1);
    expect(await inboxCount(c.jsm, "fm.inbox.*.audit.w"), "its send went out").toBe(1);

    // Let the window pass: once a probe published after the crash is no longer a duplicate, neither are the effects.
    const probes = [`${subjects.prefix}.timer.probe.w.x`, `${subjects.prefix}.out.probe.w`];
    for (const [i, stream] of [subjects.streams.inbox, subjects.streams.out].entries()) {
      await js.publish(probes[i]!, "probe", { msgID: `probe-${i}` });
      const info = await c.jsm.streams.info(stream);
      await c.jsm.streams.update(stream, { ...info.config, duplicate_window: 1_000_000_000 });
    }
    await waitFor(async () => {
      const acks = await Promise.all(probes.map((p, i) => js.publish(p, "probe", { msgID: `probe-${i}` })));
      return acks.every((a) => !a.duplicate);
    }, { timeoutMs: 10_000, intervalMs: 250, what: "the duplicate window to pass" });

    await using second = await spawnNode(nats.url, [fixture], { name: "window-2", heartbeatTtlMs });
    await waitFor(async () => (await inboxCount(c.jsm, "fm.inbox.*.*.w")) === 0 && (await c.fm.get("audit/w").then((v) => v.step, () => 0)) >= 1, { what: "the redelivered input and the send to be processed" });
    const report = await checkInvariants(c.jsm, ["acct/w", "audit/w"], new Map([["acct/w", ["w:1"]]]), { quiescent: true });
    expect(report.violations.I6, "I6 violated").toEqual([]);
    expect((await c.fm.get("audit/w")).context).toEqual({ seen: ["w:1"] });
  });

  it("fires a timer once after restart when it fell due while the node was down", async ({ expect }) => {
    await using nats = await startNatsServer();
    await using c = await connectAll(nats.url);
    await using first = await spawnNode(nats.url, [fixture], { name: "timer-1", heartbeatTtlMs });
    const armed = await c.fm.ask("alarm/due", { type: "ARM" });
    expect(armed.value).toBe("armed");
    const due = Object.values((await c.fm.get("alarm/due")).timers)[0]!.dueMs;
    await first.kill("SIGKILL");

    // The schedule fires on the server while no node runs: the fire waits in the inbox.
    await waitFor(async () => (await inboxCount(c.jsm, "fm.inbox.*.alarm.due")) === 1, { timeoutMs: alarmDelayMs + 5_000, what: "the timer to fire into the inbox" });
    expect(Date.now()).toBeGreaterThanOrEqual(due);

    await using second = await spawnNode(nats.url, [fixture], { name: "timer-2", heartbeatTtlMs });
    await waitFor(async () => (await c.fm.get("alarm/due")).value === "rang", { what: "the timer step after restart" });
    // Nothing else is left to fire: no schedule and no input for the actor.
    await waitFor(async () => (await inboxCount(c.jsm, "fm.inbox.*.alarm.due")) + (await inboxCount(c.jsm, "fm.timer.alarm.due.*")) === 0, { what: "the inbox to be empty" });
    const h = await c.fm.history("alarm/due");
    expect(h.steps.map((s) => s.kind)).toEqual(["event", "timer"]);
    expect(h.steps[1]).toMatchObject({ node: "timer-2", context: { rang: 1 } });
    expectInvariants(expect, await checkInvariants(c.jsm, ["alarm/due"], new Map(), { quiescent: true }));
  });

  it("never fires a cancelled timer when the node restarts", async ({ expect }) => {
    await using nats = await startNatsServer();
    await using c = await connectAll(nats.url);
    await using first = await spawnNode(nats.url, [fixture], { name: "cancel-1", heartbeatTtlMs });
    // `before` is cancelled before the crash; `during` is cancelled by an event sent while no node runs,
    // so its timer fires first and the late fire must be dropped; `marker` is left to ring.
    await c.fm.ask("alarm/before", { type: "ARM" });
    await c.fm.ask("alarm/during", { type: "ARM" });
    await c.fm.ask("alarm/marker", { type: "ARM" });
    const disarm = await c.fm.ask("alarm/before", { type: "DISARM" });
    expect(disarm.value).toBe("idle");
    expect((await c.fm.history("alarm/before", { at: 2 })).steps[0]!.effects.map((e) => e.kind)).toEqual(["unschedule"]);
    await first.kill("SIGKILL");

    // Any NATS client can send: publish DISARM straight into the inbox while the node is down.
    const h = headers();
    h.set("Content-Type", "application/json");
    await jetstream(c.nc).publish(subjects.inbox(parseActorAddress("alarm/during")), JSON.stringify({ type: "DISARM" }), { headers: h, msgID: "during-disarm" });
    // The marker was armed last: once its fire is in the inbox, every other timer was due too.
    await waitFor(async () => (await inboxCount(c.jsm, "fm.inbox.*.alarm.marker")) === 1, { timeoutMs: alarmDelayMs + 5_000, what: "the marker timer to fire into the inbox" });
    expect(await inboxCount(c.jsm, "fm.inbox.*.alarm.before"), "a cancelled timer fired into the inbox").toBe(0);
    expect(await inboxCount(c.jsm, "fm.inbox.*.alarm.during"), "DISARM and the timer's fire").toBe(2);

    await using second = await spawnNode(nats.url, [fixture], { name: "cancel-2", heartbeatTtlMs });
    await waitFor(async () => (await c.fm.get("alarm/marker")).value === "rang", { what: "the marker to ring" });
    await waitFor(async () => (await inboxCount(c.jsm, "fm.inbox.*.alarm.*")) + (await inboxCount(c.jsm, "fm.timer.alarm.>")) === 0, { what: "the inbox to be empty" });

    for (const key of ["before", "during"]) {
      const hist = await c.fm.history(`alarm/${key}`);
      expect(hist.steps.map((s) => `${s.kind}:${s.event.type}`), `alarm/${key}`).toEqual(["event:ARM", "event:DISARM"]);
      const v = await c.fm.get(`alarm/${key}`);
      expect(v).toMatchObject({ value: "idle", context: { rang: 0 }, timers: {} });
    }
    expectInvariants(expect, await checkInvariants(c.jsm, ["alarm/before", "alarm/during", "alarm/marker"], new Map(), { quiescent: true }));
  });
});
