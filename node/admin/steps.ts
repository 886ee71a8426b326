// node/admin/steps.ts — time travel: an actor's step N found in its journal by bisection, and the step view the admin API serves.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { CallRecord, HistoryStep, StepRecord, TimerRecord } from "../../protocol/records.js";
import type { ActorAddress, Subjects } from "../../protocol/subjects.js";
import { readLast, readRecords } from "../journal.js";
import { toHistoryStep } from "../views.js";

/** A history step plus the timers and calls pending after it: everything the actor was at that step. */
export interface StepView extends HistoryStep {
  timers: Record<string, TimerRecord>;
  calls: Record<string, CallRecord>;
}

/** The step view of a journal record. */
export function toStepView(rec: StepRecord): StepView {
  return { ...toHistoryStep(rec), timers: rec.timers ?? {}, calls: rec.calls ?? {} };
}

/**
 * The record of step `step` of an actor, or undefined if it has no such step. Steps grow with journal
 * sequences, so this bisects the stream: O(log n) direct reads however long the history.
 */
export async function findStep(jsm: JetStreamManager, subjects: Subjects, a: ActorAddress, step: number): Promise<StepRecord | undefined> {
  const last = await readLast(jsm, subjects, a);
  if (!last || last.record.step < step) return undefined;
  if (last.record.step === step) return last.record;
  let lo = 1;
  let hi = last.seq;
  while (lo <= hi) {
    const mid = Math.floor((lo + hi) / 2);
    // The first record of this actor at or after `mid`.
    const [r] = await readRecords(jsm, subjects, a, mid - 1, 1);
    if (!r || r.seq > hi) {
      hi = mid - 1;
      continue;
    }
    if (r.record.step === step) return r.record;
    if (r.record.step < step) lo = r.seq + 1;
    else hi = mid - 1;
  }
  return undefined;
}
