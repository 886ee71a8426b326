import { assign, setup } from "xstate";
import { describe, expect, it } from "vitest";
import { defineProgram, functionRef } from "../../node/program.js";
import { advance, planStep, type ActorState } from "../../node/step.js";
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
});
