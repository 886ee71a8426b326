// node/replay.ts — the determinism check: re-run a journal through a program and compare each step's snapshot.
import { isDeepStrictEqual } from "node:util";
import type { WireError } from "../protocol/errors.js";
import type { CallResult, StepRecord, WireEvent } from "../protocol/records.js";
import { parseActorAddress } from "../protocol/subjects.js";
import type { ProgramDefinition } from "./program.js";
import { planStep, restoreSnapshot, type ActorState, type StepInput } from "./step.js";

export interface ReplayReport {
  actor: string;
  /** Steps compared. */
  steps: number;
  /** The first step whose recomputed result differs from the recorded one, if any. */
  divergence?: { step: number; field: "snapshot" | "effects" | "outcome"; recorded: unknown; replayed: unknown };
}

function inputOf(rec: StepRecord): StepInput {
  const { $fm: _meta, ...event } = rec.event;
  const ev = event as WireEvent;
  if (rec.kind === "timer" && rec.timer !== undefined) return { seq: rec.seq, kind: "timer", timer: rec.timer, gen: -1, event: ev };
  if (rec.kind === "result" && rec.callId !== undefined) {
    const result: CallResult = "error" in ev ? { callId: rec.callId, error: ev.error as WireError } : { callId: rec.callId, output: ev.output };
    return { seq: rec.seq, kind: "result", result };
  }
  if (rec.kind === "send") return { seq: rec.seq, kind: "send", event: ev, ...(rec.from ? { from: rec.from } : {}), ...(rec.effect ? { effect: rec.effect } : {}) };
  return { seq: rec.seq, kind: "event", event: ev };
}

/**
 * Replays `records` (one actor's journal, in order, from step 1 or from any record onward) through
 * `program` and reports the first step where the snapshot, effects or outcome differ. Each step starts
 * from the recorded snapshot of the step before, so one divergence is reported once, where it happens.
 */
export function checkReplay(program: ProgramDefinition, records: readonly StepRecord[]): ReplayReport {
  const first = records[0];
  const actor = first?.actor ?? "";
  if (!first) return { actor, steps: 0 };
  const address = parseActorAddress(actor);
  let prev: StepRecord | undefined;
  let compared = 0;
  for (const rec of records) {
    const state: ActorState = {
      address,
      step: rec.step - 1,
      seq: rec.seq - 1,
      journalSeq: 0,
      snapshot: prev?.snapshot ? restoreSnapshot(program.machine, prev.snapshot) : undefined,
      timers: prev?.timers ?? {},
      calls: prev?.calls ?? {},
      senders: prev?.senders ?? {},
      last: prev,
    };
    const meta = (rec.event as { $fm?: { time: number } }).$fm;
    const input = inputOf(rec);
    // A timer's generation is whatever was pending before the step.
    if (input.kind === "timer") input.gen = state.timers[input.timer]?.gen ?? -1;
    const plan = planStep(program, state, input, { time: meta?.time ?? rec.time, epoch: rec.epoch, node: rec.node });
    compared++;
    if (plan.kind === "step") {
      const r = plan.record;
      if (r.outcome !== rec.outcome) return { actor, steps: compared, divergence: { step: rec.step, field: "outcome", recorded: rec.outcome, replayed: r.outcome } };
      if (!isDeepStrictEqual(normalize(r.snapshot), normalize(rec.snapshot))) {
        return { actor, steps: compared, divergence: { step: rec.step, field: "snapshot", recorded: rec.snapshot, replayed: r.snapshot } };
      }
      if (!isDeepStrictEqual(normalize(r.effects), normalize(rec.effects))) {
        return { actor, steps: compared, divergence: { step: rec.step, field: "effects", recorded: rec.effects, replayed: r.effects } };
      }
    }
    prev = rec;
  }
  return { actor, steps: compared };
}

/** Compare as stored: drop undefined fields the way the record codec does. */
function normalize(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v ?? null));
}
