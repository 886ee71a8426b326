// test/interop/interop.test.ts — the interop proof: a Python program (nats-py) and a Go program (nats.go), each
// written only against PROTOCOL.md, serve functions that a Flowmetal program invokes and act as clients of its
// actors. The node runs in-process on a real nats-server; the foreign programs are child processes.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it, test as base } from "vitest";
import { createClient, type ActorView, type Client, type HistoryStep } from "../../node/client/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";
import { goModuleDir, missingToolchains, pythonDir, run, runForeignJson, startForeign, type ForeignProcess, type LogLine } from "./support.js";

const skipReason = missingToolchains();
if (skipReason) console.warn(`test/interop skipped: ${skipReason}`);

let goBin = "";
let binDir = "";

interface Env {
  nats: NatsServer;
  node: FlowmetalNode;
  fm: Client;
  py: ForeignProcess;
  go: ForeignProcess;
}

// One server, node, client and pair of workers for the whole file, torn down in reverse order.
const test = base.extend<{ env: Env }>({
  env: [
    async ({}, use) => {
      await using nats = await startNatsServer();
      await using node = await createNode({ servers: nats.url, modules: Object.values(await import("../fixtures/interop-programs.js")), shards: 4 });
      await using fm = await createClient({ servers: nats.url });
      await using py = await startForeign("python worker", "python3", [join(pythonDir, "worker.py"), nats.url]);
      await using go = await startForeign("go worker", goBin, ["worker", nats.url]);
      await use({ nats, node, fm, py, go });
    },
    { scope: "file" },
  ],
});

type PipelineContext = {
  upper: { upper: string; attempt: number; by: string } | null;
  sum: { sum: number; attempt: number; by: string } | null;
  error: { code: string; message: string; retryable: boolean; details?: Record<string, unknown> } | null;
  failedAt: string | null;
};

async function finished(fm: Client, actor: string, timeoutMs = 15_000): Promise<ActorView & { context: PipelineContext }> {
  let view: ActorView | undefined;
  await waitFor(async () => {
    view = await fm.get(actor);
    return view.status === "done";
  }, { timeoutMs, what: `${actor} to finish` });
  return view as ActorView & { context: PipelineContext };
}

/** The call id of the function call a step asked for (§1: the effect id). */
function callIdOf(step: HistoryStep, fn: string): string {
  const e = (step.effects as { kind: string; fn?: string; id: string }[]).find((x) => x.kind === "call" && x.fn === fn);
  if (!e) throw new Error(`step ${step.step} calls no ${fn}: ${JSON.stringify(step.effects)}`);
  return e.id;
}

/** The clients' JSON reports, for the checks of known deviations. */
const reports: Record<string, Record<string, any>> = {};

const events = (lines: LogLine[]) => lines.map((l) => `${l.event}${l.attempt === undefined ? "" : `#${String(l.attempt)}`}`);

describe.skipIf(skipReason !== undefined)(`interop: Python and Go programs written from PROTOCOL.md${skipReason ? ` (skipped: ${skipReason})` : ""}`, () => {
  beforeAll(async () => {
    binDir = await mkdtemp(join(tmpdir(), "fm-interop-"));
    goBin = join(binDir, "interop-go");
    await run("go", ["build", "-buildvcs=false", "-o", goBin, "./..."], { cwd: goModuleDir, timeoutMs: 240_000 });
  }, 240_000);
  afterAll(async () => {
    if (binDir) await rm(binDir, { recursive: true, force: true });
  });

  describe("foreign function workers (§5)", () => {
    test("create the consumers §5 describes", async ({ env }) => {
      const nc = await connect({ servers: env.nats.url });
      try {
        const jsm = await jetstreamManager(nc);
        for (const [fn, name] of [["interop.py.upper", "fn-interop_py_upper"], ["interop.go.sum", "fn-interop_go_sum"]] as const) {
          const ci = await jsm.consumers.info("FM_FX", name);
          expect(ci.config).toMatchObject({ durable_name: name, filter_subject: `fm.fx.call.${fn}`, ack_policy: "explicit", max_deliver: -1 });
          // Longer than the calls' timeoutMs (1.5 s and 5 s in the fixture).
          expect(ci.config.ack_wait).toBeGreaterThan(5_000 * 1_000_000);
        }
      } finally {
        await nc.close();
      }
    });

    test("a Python and a Go function serve one actor; their results land in its context", async ({ env: { fm, py, go } }) => {
      await fm.send("interop/happy", { type: "RUN", text: "hello interop", numbers: [1, 2, 3.5] });
      const v = await finished(fm, "interop/happy");
      expect(v.value).toBe("done");
      expect(v.context.upper).toEqual({ upper: "HELLO INTEROP", attempt: 1, by: "python" });
      expect(v.context.sum).toEqual({ sum: 6.5, attempt: 1, by: "go" });
      expect(v.calls).toEqual({});

      const { steps } = await fm.history("interop/happy");
      expect(steps.map((s) => [s.kind, s.event.type, s.value])).toEqual([
        ["event", "RUN", "upper"],
        ["result", "xstate.done.actor.upper", "sum"],
        ["result", "xstate.done.actor.sum", "done"],
      ]);
      const upperCall = callIdOf(steps[0]!, "interop.py.upper");
      const sumCall = callIdOf(steps[1]!, "interop.go.sum");
      expect(upperCall).toBe("interop.happy.1.0");
      // Each worker saw the call once, with the documented body, and answered it.
      expect(events(py.callLines(upperCall))).toEqual(["call#1", "reply#1"]);
      expect(py.callLines(upperCall)[0]).toMatchObject({ fn: "interop.py.upper", actor: "interop/happy", input: { text: "hello interop", mode: "ok" } });
      expect(events(go.callLines(sumCall))).toEqual(["call#1", "reply#1"]);
      expect(go.callLines(sumCall)[0]).toMatchObject({ fn: "interop.go.sum", actor: "interop/happy", input: { numbers: [1, 2, 3.5], mode: "ok" } });
      expect(go.callLines(sumCall)[1]).toMatchObject({ ok: true, duplicate: false });
    });

    test("a retryable failure is nak'ed with backoff and succeeds on the next attempt", async ({ env: { fm, py, go } }) => {
      await fm.send("interop/flaky", { type: "RUN", text: "again", numbers: [10, 20], upperMode: "flaky", sumMode: "flaky" });
      const v = await finished(fm, "interop/flaky");
      expect(v.value).toBe("done");
      expect(v.context.upper).toEqual({ upper: "AGAIN", attempt: 2, by: "python" });
      expect(v.context.sum).toEqual({ sum: 30, attempt: 2, by: "go" });
      // The failed attempts are invisible to the actor: one step per result.
      const { steps } = await fm.history("interop/flaky");
      expect(steps.map((s) => s.kind)).toEqual(["event", "result", "result"]);

      for (const [w, callId] of [[py, callIdOf(steps[0]!, "interop.py.upper")], [go, callIdOf(steps[1]!, "interop.go.sum")]] as const) {
        const lines = w.callLines(callId);
        expect(events(lines), w.name).toEqual(["call#1", "nak#1", "call#2", "reply#2"]);
        const nak = lines[1]!;
        // initialBackoffMs 50 × multiplier^0, ±20 %.
        expect(nak.delayMs as number).toBeGreaterThanOrEqual(40);
        expect(nak.delayMs as number).toBeLessThanOrEqual(60);
        // JetStream held the redelivery back for the delay (some slack for timestamps of two clocks' reads).
        expect((lines[2]!.t - lines[0]!.t) * 1000).toBeGreaterThanOrEqual(35);
      }
    });

    test("an attempt that overruns timeoutMs is retried (Python, FM_ERR_FUNCTION_TIMEOUT)", async ({ env: { fm, py } }) => {
      await fm.send("interop/slow", { type: "RUN", text: "tortoise", numbers: [], upperMode: "slow" });
      const v = await finished(fm, "interop/slow");
      expect(v.context.upper).toEqual({ upper: "TORTOISE", attempt: 2, by: "python" });
      expect(v.context.sum).toEqual({ sum: 0, attempt: 1, by: "go" });
      const lines = py.callLines("interop.slow.1.0");
      expect(events(lines)).toEqual(["call#1", "nak#1", "call#2", "reply#2"]);
      expect(lines[1]).toMatchObject({ error: { code: "FM_ERR_FUNCTION_TIMEOUT", retryable: true } });
      expect((lines[1]!.t - lines[0]!.t) * 1000).toBeGreaterThanOrEqual(1400);
    });

    test("a terminal failure becomes xstate.error.actor with the error's code and message (Python)", async ({ env: { fm, py } }) => {
      await fm.send("interop/py-terminal", { type: "RUN", text: "bad", numbers: [1], upperMode: "terminal" });
      const v = await finished(fm, "interop/py-terminal");
      expect(v.value).toBe("failed");
      expect(v.context.failedAt).toBe("upper");
      expect(v.context.upper).toBeNull();
      expect(v.context.error).toEqual({
        code: "FM_ERR_FUNCTION_FAILED",
        message: "python refuses to upper-case 'bad'",
        retryable: false,
        details: { text: "bad", worker: "python" },
      });
      const { steps } = await fm.history("interop/py-terminal");
      expect(steps[1]).toMatchObject({ kind: "result", event: { type: "xstate.error.actor.upper", error: { code: "FM_ERR_FUNCTION_FAILED" } }, value: "failed" });
      // Terminal: answered on the first attempt, never retried.
      expect(events(py.callLines("interop.py-terminal.1.0"))).toEqual(["call#1", "reply#1"]);
    });

    test("a terminal failure becomes xstate.error.actor with the error's code and message (Go)", async ({ env: { fm, go } }) => {
      await fm.send("interop/go-terminal", { type: "RUN", text: "fine", numbers: [1, 2], sumMode: "terminal" });
      const v = await finished(fm, "interop/go-terminal");
      expect(v.value).toBe("failed");
      expect(v.context.failedAt).toBe("sum");
      expect(v.context.upper).toEqual({ upper: "FINE", attempt: 1, by: "python" });
      expect(v.context.error).toEqual({
        code: "FM_ERR_FUNCTION_FAILED",
        message: "go refuses to sum 2 numbers",
        retryable: false,
        details: { count: 2, worker: "go" },
      });
      const { steps } = await fm.history("interop/go-terminal");
      expect(steps.map((s) => s.event.type)).toEqual(["RUN", "xstate.done.actor.upper", "xstate.error.actor.sum"]);
      expect(events(go.callLines(callIdOf(steps[1]!, "interop.go.sum")))).toEqual(["call#1", "reply#1"]);
    });

    test("retryable failures stop after retry.maxAttempts with an error result", async ({ env: { fm, py, go } }) => {
      await fm.send("interop/py-always", { type: "RUN", text: "x", numbers: [], upperMode: "always" });
      await fm.send("interop/go-always", { type: "RUN", text: "y", numbers: [4], sumMode: "always" });
      const p = await finished(fm, "interop/py-always");
      expect(p.context.error).toEqual({ code: "FM_ERR_FUNCTION_FAILED", message: "python transient failure on attempt 3", retryable: false });
      expect(events(py.callLines("interop.py-always.1.0"))).toEqual(["call#1", "nak#1", "call#2", "nak#2", "call#3", "reply#3"]);
      // The second backoff is initialBackoffMs × multiplier (50 × 2), ±20 %.
      const secondNak = py.callLines("interop.py-always.1.0")[3]!;
      expect(secondNak.delayMs as number).toBeGreaterThanOrEqual(80);
      expect(secondNak.delayMs as number).toBeLessThanOrEqual(120);

      const g = await finished(fm, "interop/go-always");
      expect(g.context).toMatchObject({ failedAt: "sum", error: { code: "FM_ERR_FUNCTION_FAILED", message: "go transient failure on attempt 3", retryable: false } });
      const { steps } = await fm.history("interop/go-always");
      expect(events(go.callLines(callIdOf(steps[1]!, "interop.go.sum")))).toEqual(["call#1", "nak#1", "call#2", "nak#2", "call#3", "reply#3"]);
    });

    test("a worker gets the cancel notice when the actor leaves the invoking state", async ({ env: { fm, py } }) => {
      await fm.send("interop/cancel", { type: "RUN", text: "forever", numbers: [], upperMode: "hang" });
      await py.waitForLine((l) => l.event === "call" && l.callId === "interop.cancel.1.0", "the hanging call");
      const r = await fm.ask("interop/cancel", { type: "ABORT" });
      expect(r).toMatchObject({ value: "aborted", status: "done" });
      await py.waitForLine((l) => l.event === "cancelled" && l.callId === "interop.cancel.1.0", "the call to be cancelled");
      expect(events(py.callLines("interop.cancel.1.0"))).toEqual(["call#1", "cancel-notice", "cancelled#1"]);
      const { steps } = await fm.history("interop/cancel");
      expect(steps.map((s) => s.event.type)).toEqual(["RUN", "ABORT"]);
      expect(steps[1]!.effects).toEqual([expect.objectContaining({ kind: "cancel", fn: "interop.py.upper", callId: "interop.cancel.1.0" })]);
    });
  });

  describe("foreign clients (§3, §6, §9)", () => {
    // What both clients' reports share: the ledger took a JSON event (sent twice with one Nats-Msg-Id), a CBOR
    // event, an ask (asked twice with one msgId) and an event it does not accept.
    async function checkLedgerReport(fm: Client, r: Record<string, any>, key: string, amounts: { json: number; cbor: number; ask: number }, cbor: Record<string, unknown>) {
      const actor = `ledger/${key}`;
      const [a1, a1again, a2] = r.pubAcks;
      expect(a1).toMatchObject({ stream: "FM_IN", duplicate: false });
      expect(a1again).toEqual({ ...a1, duplicate: true });
      expect(a2).toMatchObject({ stream: "FM_IN", duplicate: false });
      expect(a2.seq).toBeGreaterThan(a1.seq);

      // §6 notices of the two published events.
      const bySeq = new Map((r.notices as any[]).map((n) => [n.seq, n]));
      expect(bySeq.get(a1.seq)).toMatchObject({ actor, step: 1, outcome: "ok", value: "open", status: "active", context: { total: amounts.json } });
      const n2 = bySeq.get(a2.seq);
      expect(n2).toMatchObject({ actor, step: 2, outcome: "ok", value: "open", context: { total: amounts.json + amounts.cbor } });
      // The CBOR event arrived as JSON-like data, its tag-0 date as an ISO string.
      expect(n2.context.last).toEqual(cbor);
      expect(typeof n2.time).toBe("number");

      const total = amounts.json + amounts.cbor + amounts.ask;
      expect(r.ask).toMatchObject({ ok: true, result: { actor, step: 3, outcome: "ok", value: "open", context: { total }, duplicate: false } });
      expect(r.askNotAccepted).toMatchObject({ ok: false, error: { code: "FM_ERR_EVENT_NOT_ACCEPTED", retryable: false } });
      // The retried ask (same msgId) is stored once: nothing new in the journal. Which step it answers with is
      // checked under "known deviations" below.
      expect(r.askAgain).toMatchObject({ ok: true, result: { actor, duplicate: true, context: { total } } });

      expect(r.get).toMatchObject({ actor, program: "ledger", version: "1", step: 4, value: "open", status: "active", context: { total } });
      expect(r.get).toEqual(await fm.get(actor));
      // History in pages of 2, following `next`: [1, 2] and [3, 4]; the last page has no `next`.
      const pages = r.historyPages as any[];
      expect(pages).toHaveLength(2);
      expect(pages[1].result.next).toBeUndefined();
      expect(pages.slice(0, 2).map((p) => p.ok)).toEqual([true, true]);
      const steps = pages.slice(0, 2).flatMap((p) => p.result.steps as any[]);
      expect(steps.map((s) => [s.step, s.kind, s.event.type, s.outcome])).toEqual([
        [1, "event", "ADD", "ok"],
        [2, "event", "ADD", "ok"],
        [3, "event", "ADD", "ok"],
        [4, "event", "NOPE", "ignored"],
      ]);
      expect(steps[3].error).toMatchObject({ code: "FM_ERR_EVENT_NOT_ACCEPTED" });
      for (const s of steps) expect(s.event.$fm).toEqual({ time: s.time, step: s.step, seq: s.seq });
      expect(steps).toEqual((await fm.history(actor)).steps);
      expect(r.unknownActor).toMatchObject({ ok: false, error: { code: "FM_ERR_UNKNOWN_ACTOR" } });
    }

    test("a Python client sends JSON and CBOR events, asks, and reads state and history", async ({ env: { fm, nats } }) => {
      const r = await runForeignJson<Record<string, any>>("python client", "python3", [join(pythonDir, "client.py"), nats.url, "py-client"]);
      reports.python = r;
      await checkLedgerReport(fm, r, "py-client", { json: 5, cbor: 2.5, ask: 10 }, {
        type: "ADD", amount: 2.5, note: "py-cbor", tags: ["a", "b"], nested: { deep: { n: 1, ok: true, nothing: null } }, when: "2026-01-02T03:04:05.000Z",
      });
      expect(r.historyAt2.steps).toHaveLength(1);
      expect(r.historyAt2.steps[0]).toMatchObject({ step: 2, event: { note: "py-cbor" } });
      expect(r.badAddress).toMatchObject({ ok: false, error: { code: "FM_ERR_INVALID_ADDRESS" } });
      expect(r.programs.programs.map((p: { name: string }) => p.name).sort()).toEqual(["interop", "ledger"]);
      // §3.3: the undecodable event went to the dead-letter stream with its body, headers and the reason.
      expect(r.deadLetter).toMatchObject({ subject: "fm.dead.ledger.py-client-dead", data: "type=ADD" });
      expect(r.deadLetter.headers).toMatchObject({ "Content-Type": "text/plain", "Fm-Error-Code": "FM_ERR_MALFORMED_PAYLOAD", "Fm-Inbox-Seq": String(r.deadLetter.inboxSeq) });
      expect(r.deadLetter.headers["Fm-Error"]).toMatch(/content type/);
      expect(r.deadActor).toMatchObject({ ok: false, error: { code: "FM_ERR_UNKNOWN_ACTOR" } });
    });

    test("a Go client sends JSON and CBOR events, asks, reads state, and runs the pipeline", async ({ env: { fm, nats } }) => {
      const r = await runForeignJson<Record<string, any>>("go client", goBin, ["client", nats.url, "go-client"]);
      reports.go = r;
      await checkLedgerReport(fm, r, "go-client", { json: 7, cbor: 0.25, ask: 100 }, {
        type: "ADD", amount: 0.25, note: "go-cbor", tags: ["x", "y"], nested: { deep: { n: -3, ok: false, nothing: null } }, when: "2026-01-02T03:04:05.000Z",
      });
      // A Go client started an actor whose calls a Python and a Go worker answered.
      expect(r.pipelineAsk).toMatchObject({ ok: true, result: { actor: "interop/go-client", step: 1, value: "upper", duplicate: false } });
      expect(r.pipeline).toMatchObject({
        actor: "interop/go-client",
        status: "done",
        value: "done",
        context: { upper: { upper: "FROM GO", attempt: 1, by: "python" }, sum: { sum: 7, attempt: 1, by: "go" } },
      });
    });
  });

  // Behaviours that were once wrong in the runtime (found by these foreign clients following PROTOCOL.md).
  describe("PROTOCOL.md §9 edge cases", () => {
    for (const lang of ["python", "go"] as const) {
      it(`§9 ask: a retried ask answers with the step that took the event (${lang} client)`, () => {
        const r = reports[lang]!;
        expect(r.askAgain.result).toMatchObject({ step: r.ask.result.step, seq: r.ask.result.seq, duplicate: true });
      });
    }
  });
});
