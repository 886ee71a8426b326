import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { connect } from "@nats-io/transport-node";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import { workerConsumerName } from "../../protocol/worker.js";
import * as programs from "../fixtures/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { spoilPull, withFaults } from "../support/faulty-connection.js";
import { waitFor } from "../support/wait.js";

let nats: NatsServer;
let node: FlowmetalNode;
let fm: Client;

beforeAll(async () => {
  nats = await startNatsServer();
  node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 4 });
  fm = await createClient({ servers: nats.url });
});
afterAll(async () => {
  await fm?.close();
  await node?.close();
  await nats?.[Symbol.asyncDispose]();
});

async function expectCode(p: Promise<unknown>, code: string) {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(FlowmetalError.is(err) ? err.code : err).toBe(code);
  return err as FlowmetalError;
}

describe("step engine", () => {
  it("creates an actor with its first event and counts every event once", async () => {
    const r = await fm.ask("counter/a", { type: "INC" });
    expect(r).toMatchObject({ step: 1, outcome: "ok", value: "on", context: { n: 1 }, emitted: [{ type: "counted", n: 1 }] });
    for (let i = 0; i < 5; i++) await fm.send("counter/a", { type: "INC" });
    await waitFor(async () => (await fm.get("counter/a")).step === 6);
    const v = await fm.get("counter/a");
    expect(v.context).toMatchObject({ n: 6 });
    expect(typeof (v.context as { at: number }).at).toBe("number");
  });

  it("lists the history step by step with event, state and effects", async () => {
    const page = await fm.history("counter/a", { limit: 4 });
    expect(page.steps.map((s) => s.step)).toEqual([1, 2, 3, 4]);
    expect(page.steps[0]).toMatchObject({ event: { type: "INC" }, value: "on", context: { n: 1 }, effects: [{ kind: "emit", id: "counter.a.1.0" }] });
    const rest = await fm.history("counter/a", { after: page.next });
    expect(rest.steps.map((s) => s.step)).toEqual([5, 6]);
    expect(rest.next).toBeUndefined();
    const at = await fm.history("counter/a", { at: 3 });
    expect(at.steps[0]).toMatchObject({ step: 3, context: { n: 3 } });
  });

  it("dedupes a sender's retry that carries the same msgId", async () => {
    const a = await fm.send("counter/dedupe", { type: "INC" }, { msgId: "m-1" });
    const b = await fm.send("counter/dedupe", { type: "INC" }, { msgId: "m-1" });
    expect(b).toMatchObject({ seq: a.seq, duplicate: true });
    await fm.ask("counter/dedupe", { type: "INC" }, { msgId: "m-2" });
    expect((await fm.get("counter/dedupe")).context).toMatchObject({ n: 2 });
  });

  it("records an event the state does not accept and answers FM_ERR_EVENT_NOT_ACCEPTED", async () => {
    await fm.ask("counter/b", { type: "FINISH" });
    const err = await expectCode(fm.ask("counter/b", { type: "INC" }), ErrorCode.ActorDone);
    expect(err.message).toMatch(/done/);
    const err2 = await expectCode(fm.ask("timers/nope", { type: "DISARM" }), ErrorCode.EventNotAccepted);
    expect(err2.message).toContain("DISARM");
    const h = await fm.history("timers/nope");
    expect(h.steps[0]).toMatchObject({ outcome: "ignored", error: { code: ErrorCode.EventNotAccepted } });
  });

  it("records a throwing action as a failed step and keeps accepting events", async () => {
    await fm.ask("counter/c", { type: "INC" });
    const err = await expectCode(fm.ask("counter/c", { type: "BOOM" }), ErrorCode.StepFailed);
    expect(err.message).toContain("kaboom");
    const r = await fm.ask("counter/c", { type: "INC" });
    expect(r).toMatchObject({ step: 3, context: { n: 2 } });
  });

  it("rejects bad input with a clear error and accepts nothing", async () => {
    await expectCode(fm.send("nosuch/a", { type: "X" }), ErrorCode.UnknownProgram);
    await expectCode(fm.send("counter/bad key", { type: "X" }), ErrorCode.InvalidToken);
    await expectCode(fm.send("counter", { type: "X" }), ErrorCode.InvalidAddress);
    await expectCode(fm.send("counter/d", { nope: 1 } as never), ErrorCode.InvalidEvent);
    await expectCode(fm.send("counter/d", { type: "xstate.init" }), ErrorCode.InvalidEvent);
    await expectCode(fm.send("counter/d", { type: "BIG", blob: "x".repeat(2_000_000) }), ErrorCode.PayloadTooLarge);
    await expectCode(fm.get("counter/d"), ErrorCode.UnknownActor);
  });
});

describe("function calls", () => {
  it("retries a failing function and applies its result once", async () => {
    const r = await fm.ask("worker/w1", { type: "GO", failTimes: 2 });
    expect(r.value).toBe("calling");
    await waitFor(async () => (await fm.get("worker/w1")).value === "done");
    const v = await fm.get("worker/w1");
    expect(v.context).toMatchObject({ result: { ok: true, attempts: 3 } });
    expect(v.calls).toEqual({});
    const h = await fm.history("worker/w1");
    expect(h.steps.map((s) => s.kind)).toEqual(["event", "result"]);
  });

  it("delivers xstate.error.actor when attempts are used up or the error is terminal", async () => {
    await fm.ask("worker/w2", { type: "GO", failTimes: 10 });
    await waitFor(async () => (await fm.get("worker/w2")).value === "failed");
    expect((await fm.get("worker/w2")).context).toMatchObject({ error: { code: ErrorCode.FunctionFailed } });
    await fm.ask("worker/w3", { type: "GO", failTimes: 0, terminal: true });
    await waitFor(async () => (await fm.get("worker/w3")).value === "failed");
    expect(programs.attempts.get("x:worker/w3") ?? 1).toBe(1);
  });

  it("cancels the call when the actor leaves the invoking state", async () => {
    const r = await fm.ask("worker/w4", { type: "SLOW" });
    expect(Object.keys((await fm.get("worker/w4")).calls)).toEqual(["slowcall"]);
    const r2 = await fm.ask("worker/w4", { type: "ABORT" });
    expect(r2.value).toBe("idle");
    const h = await fm.history("worker/w4");
    const cancel = h.steps[1]!.effects.find((e) => e.kind === "cancel");
    expect(cancel).toMatchObject({ kind: "cancel", fn: "test.slow", callId: h.steps[0]!.effects[0]!.id });
    expect(r.step).toBe(1);
  });

  it("consumes calls again when the client library gives the function's consumer up (a pull answered 400)", async () => {
    // A node of its own (prefix "spl", so no other worker serves its calls) whose first pull of calls is made
    // invalid: the server answers 400 and nats.js stops that consume for good.
    await using base = await connect({ servers: nats.url });
    const spoiled: string[] = [];
    const nc = withFaults(base, {
      publish(subject, data) {
        if (spoiled.length > 0 || subject !== `$JS.API.CONSUMER.MSG.NEXT.SPL_FX.${workerConsumerName("test.flaky")}`) return undefined;
        spoiled.push(subject);
        return spoilPull(data);
      },
    });
    await using spl = await createNode({ nc, prefix: "spl", modules: [programs.worker, programs.flaky], shards: 2 });
    await using client = await createClient({ servers: nats.url, prefix: "spl" });
    expect(spoiled).toHaveLength(1);
    const r = await client.ask("worker/after-400", { type: "GO", failTimes: 0 });
    expect(r.value).toBe("calling");
    await waitFor(async () => (await client.get("worker/after-400")).value === "done", { what: "the call run by the worker consuming again", timeoutMs: 10_000 });
    expect((await client.get("worker/after-400")).context).toMatchObject({ result: { ok: true } });
    expect(spl.functions).toContain("test.flaky");
  });
});

describe("durable timers", () => {
  it("fires an after-timer through the inbox", async () => {
    await fm.ask("timers/t1", { type: "ARM" });
    await waitFor(async () => (await fm.get("timers/t1")).value === "rang", { timeoutMs: 5000 });
    const h = await fm.history("timers/t1");
    expect(h.steps.map((s) => s.kind)).toEqual(["event", "timer"]);
  });

  it("never fires a cancelled timer", async () => {
    await fm.ask("timers/t2", { type: "ARM" });
    const r = await fm.ask("timers/t2", { type: "DISARM" });
    expect(r.value).toBe("idle");
    const h1 = await fm.history("timers/t2");
    expect(h1.steps[1]!.effects.map((e) => e.kind)).toEqual(["unschedule"]);
    // Arm a later timer as a marker: once it has fired, the cancelled one would have too.
    await fm.ask("timers/t2", { type: "PING" });
    await waitFor(async () => (await fm.get("timers/t2")).context !== null && ((await fm.get("timers/t2")).context as { fired: number }).fired === 1, { timeoutMs: 5000 });
    await new Promise((r) => setTimeout(r, 400));
    const h = await fm.history("timers/t2");
    expect(h.steps.map((s) => s.kind)).toEqual(["event", "event", "event", "timer"]);
    expect((await fm.get("timers/t2")).value).toBe("idle");
  });
});

describe("actor to actor", () => {
  it("delivers sendToActor once the step is persisted", async () => {
    await fm.ask("pinger/p1", { type: "PING", to: "pinger/p2" });
    await waitFor(async () => ((await fm.get("pinger/p2").catch(() => ({ context: { pongs: 0 } }))).context as { pongs: number }).pongs === 1);
    const h = await fm.history("pinger/p2");
    expect(h.steps[0]).toMatchObject({ kind: "send", event: { type: "PONG" } });
  });
});
