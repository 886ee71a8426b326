import { assign, createActor, fromCallback, fromPromise, setup, type AnyMachineSnapshot } from "xstate";
import { describe, expect, it, vi } from "vitest";
import { defineProgram, functionRef } from "../../node/program.js";
import { advance, persistSnapshot, planStep, type ActorState } from "../../node/step.js";
import type { ActorAddress } from "../../protocol/subjects.js";

const work = functionRef<{ n: number }, number>("step.test.work");

/** Invokes a function with a `systemId`, leaves the state and enters it again: the same systemId every time. */
const looper = defineProgram({
  name: "looper",
  version: "1",
  machine: setup({ actors: { work } }).createMachine({
    id: "looper",
    initial: "idle",
    context: { rounds: 0 },
    states: {
      idle: { on: { GO: "working" } },
      working: {
        invoke: { id: "w", systemId: "worker", src: "work", input: ({ context }) => ({ n: context.rounds }) },
        on: { STOP: { target: "idle", actions: assign({ rounds: ({ context }) => context.rounds + 1 }) } },
      },
    },
  }),
});

function fresh(key: string): ActorState {
  return { address: { program: "looper", key } as ActorAddress, step: 0, seq: 0, journalSeq: 0, snapshot: undefined, timers: {}, calls: {}, senders: {}, last: undefined };
}

function take(state: ActorState, type: string): ReturnType<typeof planStep> {
  const plan = planStep(looper, state, { seq: state.seq + 1, kind: "event", event: { type } }, { time: 1_000 + state.step, epoch: 1, node: "t" });
  if (plan.kind === "step") advance(state, plan.record, plan.snapshot, state.journalSeq + 1);
  return plan;
}

describe("the pure step", () => {
  it("spawns a child with the same systemId again and again, for many actors of one machine, without collisions", () => {
    const actors = [fresh("a"), fresh("b"), fresh("c")];
    for (let round = 0; round < 20; round++) {
      for (const s of actors) {
        const go = take(s, "GO");
        expect(go).toMatchObject({ kind: "step", record: { outcome: "ok", value: "working" } });
        const calls = go.kind === "step" ? go.record.effects.filter((e) => e.kind === "call") : [];
        expect(calls).toHaveLength(1);
        const stop = take(s, "STOP");
        expect(stop).toMatchObject({ kind: "step", record: { outcome: "ok", value: "idle" } });
        expect(stop.kind === "step" && stop.record.effects.map((e) => e.kind)).toEqual(["cancel"]);
      }
    }
    for (const s of actors) expect(s.snapshot?.context).toEqual({ rounds: 20 });
  });

  it("gives the same records as XState's own transition() would: the machine's initial state is not leaked into a step", () => {
    const s = fresh("d");
    take(s, "GO");
    take(s, "STOP");
    const again = take(s, "GO");
    expect(again.kind === "step" && again.record.snapshot).toMatchObject({ value: "working", context: { rounds: 1 } });
  });

  it("persists snapshots exactly as XState's getPersistedSnapshot does: history, children, actor refs in context", async () => {
    const machine = setup({
      actors: { ticker: fromCallback(() => () => {}), job: fromPromise(async () => 42) },
    }).createMachine({
      id: "shapes",
      context: ({ spawn }) => ({ n: 0, nested: { list: [1, { deep: "x" }], ref: spawn("ticker", { id: "in-context" }) }, empty: null as null }),
      initial: "on",
      states: {
        on: {
          initial: "a",
          invoke: { id: "job-1", src: "job" },
          states: { a: { on: { NEXT: "b" } }, b: {}, hist: { type: "history", history: "deep" } },
          on: { OFF: "off", INC: { actions: assign({ n: ({ context }) => context.n + 1 }) } },
        },
        off: { on: { ON: "on.hist" } },
        done: { type: "final" },
      },
      on: { FINISH: ".done" },
    });
    const actor = createActor(machine).start();
    const seen: AnyMachineSnapshot[] = [actor.getSnapshot()];
    for (const type of ["INC", "NEXT", "OFF", "ON", "INC", "FINISH"]) {
      actor.send({ type });
      seen.push(actor.getSnapshot());
    }
    await new Promise((r) => setTimeout(r, 10)); // the promise child resolves
    seen.push(actor.getSnapshot());
    const spy = vi.spyOn(machine, "getPersistedSnapshot");
    const persisted = seen.map((snap) => persistSnapshot(snap));
    expect(spy).not.toHaveBeenCalled(); // built by persistSnapshot itself, not its fallback to XState
    spy.mockRestore();
    expect(seen.some((x) => Object.keys(x.children).length > 0) && seen.some((x) => Object.keys(x.historyValue).length > 0)).toBe(true);
    for (const [i, snap] of seen.entries()) {
      const ours = persisted[i];
      const xstate = machine.getPersistedSnapshot(snap);
      expect(ours).toStrictEqual(xstate);
      expect(Object.keys(ours as object)).toEqual(Object.keys(xstate)); // same order, so the same CBOR bytes
    }
    // The context's actor ref is replaced, not copied as an object graph; the machine's own context is untouched.
    expect((persistSnapshot(seen[0]!) as { context: { nested: { ref: unknown } } }).context.nested.ref).toEqual({ xstate$$type: 1, id: "in-context" });
    expect((seen[0]!.context as { nested: { ref: { sessionId?: string } } }).nested.ref.sessionId).toBeTypeOf("string");
    actor.stop();
  });
});
