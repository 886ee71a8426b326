// node/admin/steps.ts — time travel: an actor's step N found in its journal by bisection, and the step view the admin API serves.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { CallRecord, HistoryStep, StepRecord, TimerRecord } from "../../protocol/records.js";
import type { ActorAddress, Subjects } from "../../protocol/subjects.js";
import { findRecord } from "../journal.js";
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

/** The record of step `step` of an actor, or undefined if it has no such step (O(log n) reads). */
export function findStep(jsm: JetStreamManager, subjects: Subjects, a: ActorAddress, step: number): Promise<StepRecord | undefined> {
  return findRecord(jsm, subjects, a, "step", step);
}
