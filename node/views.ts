// node/views.ts — what clients see of a journal record: the actor view, a history step, a state notice.
import type { ActorView, HistoryStep, StateNotice, StepRecord } from "../protocol/records.js";

export function toView(rec: StepRecord): ActorView {
  const [program] = rec.actor.split("/");
  return {
    actor: rec.actor,
    program: program ?? "",
    version: rec.version,
    step: rec.step,
    value: rec.value,
    status: rec.status,
    context: (rec.snapshot as { context?: unknown } | null)?.context ?? null,
    timers: rec.timers,
    calls: rec.calls,
    updated: rec.time,
  };
}

/** The state notice of a recorded step, as it was published after the step. */
export function toNotice(rec: StepRecord): StateNotice {
  const n: StateNotice = {
    actor: rec.actor,
    step: rec.step,
    seq: rec.seq,
    outcome: rec.outcome,
    value: rec.value,
    status: rec.status,
    context: (rec.snapshot as { context?: unknown } | null)?.context ?? null,
    emitted: rec.effects.length === 0 ? [] : rec.effects.flatMap((x) => (x.kind === "emit" ? [x.event] : [])),
    time: rec.time,
  };
  if (rec.error) n.error = rec.error;
  return n;
}

export function toHistoryStep(rec: StepRecord): HistoryStep {
  const s: HistoryStep = {
    step: rec.step,
    seq: rec.seq,
    kind: rec.kind,
    event: rec.event,
    outcome: rec.outcome,
    value: rec.value,
    status: rec.status,
    context: (rec.snapshot as { context?: unknown } | null)?.context ?? null,
    effects: rec.effects,
    version: rec.version,
    node: rec.node,
    epoch: rec.epoch,
    time: rec.time,
  };
  if (rec.error) s.error = rec.error;
  return s;
}

