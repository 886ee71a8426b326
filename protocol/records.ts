// protocol/records.ts — the shapes on the wire: journal step records, effects, calls, results, notices, API bodies.
import type { WireError } from "./errors.js";

/** An XState event as Flowmetal carries it: an object with a string `type`. */
export interface WireEvent {
  type: string;
  [field: string]: unknown;
}

/** Metadata stamped into every event the node processes, under `$fm`. */
export interface EventMeta {
  /** Wall-clock time of the step, ms since the epoch. */
  time: number;
  /** The step this event produced. */
  step: number;
  /** The inbox stream sequence the event was read from. */
  seq: number;
}

/** Where a step's input came from. */
export type InputKind = "event" | "timer" | "result" | "send";

/**
 * What became of an input:
 * - `ok`: the machine took it (its state or context may still be unchanged);
 * - `ignored`: the current state has no transition for it (or the actor is done); recorded, nothing changed;
 * - `failed`: a guard or action threw; the error is recorded, nothing changed.
 */
export type StepOutcome = "ok" | "ignored" | "failed";

/** A durable timer pending for an actor (kept in each step record beside the snapshot). */
export interface TimerRecord {
  /** The step that scheduled it; a fire carrying another generation is stale and dropped. */
  gen: number;
  /** When it is due, ms since the epoch. */
  dueMs: number;
  /** Subject token of its schedule (a hash of the timer id). */
  token: string;
}

/** A function call pending for an actor, by invoke id. */
export interface CallRecord {
  /** The call id (the id of the effect that made it). Results for other call ids are dropped. */
  callId: string;
  fn: string;
  /** The step that started it. */
  step: number;
}

/** Retry policy sent with each call (all durations in ms). */
export interface WireRetryPolicy {
  maxAttempts: number;
  initialBackoffMs: number;
  multiplier: number;
  maxBackoffMs: number;
}

/** What a step asks of the world. `id` is `<program>.<key>.<step>.<index>`, the dedupe key everywhere. */
export type Effect =
  | { id: string; kind: "emit"; event: WireEvent }
  | { id: string; kind: "send"; to: string; event: WireEvent }
  | { id: string; kind: "schedule"; timer: string; token: string; gen: number; dueMs: number; event: WireEvent }
  | { id: string; kind: "unschedule"; timer: string; token: string }
  | { id: string; kind: "call"; fn: string; invokeId: string; input: unknown; retry: WireRetryPolicy; timeoutMs: number }
  | { id: string; kind: "cancel"; fn: string; callId: string };

/** One journal record: one step of one actor. Stored CBOR-encoded on `fm.log.<program>.<key>`. */
export interface StepRecord {
  /** Record format version. */
  v: 1;
  /** `<program>/<key>` */
  actor: string;
  step: number;
  /** Inbox sequence consumed by this step. */
  seq: number;
  kind: InputKind;
  /** The input, with `$fm` metadata. */
  event: WireEvent;
  /** For `timer` inputs: the timer that fired. */
  timer?: string;
  /** For `result` inputs: the call the result belongs to. */
  callId?: string;
  /** For `send` inputs: the sending actor and the id of its send effect. */
  from?: string;
  effect?: string;
  outcome: StepOutcome;
  error?: WireError;
  /** State value and status after the step (copied from the snapshot for cheap reading). */
  value: unknown;
  status: string;
  /** XState persisted snapshot after the step: resuming needs only this record. */
  snapshot: unknown;
  timers: Record<string, TimerRecord>;
  calls: Record<string, CallRecord>;
  /** Per sending actor, `[step, index]` of the last send taken from it (older copies are dropped). */
  senders?: Record<string, [number, number]>;
  effects: Effect[];
  /** Program version that took the step. */
  version: string;
  /** Ownership epoch and node of the writer. */
  epoch: number;
  node: string;
  time: number;
}

/** Body of a function call message on `fm.fx.call.<function>` (JSON). */
export interface CallMessage {
  callId: string;
  fn: string;
  input: unknown;
  /** The caller, `<program>/<key>`. */
  actor: string;
  /** Subject to publish the result to (the caller's inbox), with `Nats-Msg-Id: <callId>.result`. */
  replyTo: string;
  retry: WireRetryPolicy;
  timeoutMs: number;
}

/** Body of a function result (JSON), published by a worker to `replyTo`. Exactly one of the two fields. */
export type CallResult = { callId: string; output: unknown } | { callId: string; error: WireError };

/** Published on `fm.state.<program>.<key>` after every step (core NATS, not persisted). */
export interface StateNotice {
  actor: string;
  step: number;
  seq: number;
  outcome: StepOutcome;
  error?: WireError;
  value: unknown;
  status: string;
  context: unknown;
  /** Events the step emitted (`emit`). */
  emitted: WireEvent[];
  time: number;
}

/** What `get` returns. */
export interface ActorView {
  actor: string;
  program: string;
  version: string;
  step: number;
  value: unknown;
  status: string;
  context: unknown;
  timers: Record<string, TimerRecord>;
  calls: Record<string, CallRecord>;
  updated: number;
}

/** One step as `history` returns it. */
export interface HistoryStep {
  step: number;
  seq: number;
  kind: InputKind;
  event: WireEvent;
  outcome: StepOutcome;
  error?: WireError;
  value: unknown;
  status: string;
  context: unknown;
  effects: Effect[];
  version: string;
  node: string;
  epoch: number;
  time: number;
}

/** A page of history; pass `next` as `after` to get the following page. */
export interface HistoryPage {
  actor: string;
  steps: HistoryStep[];
  /** Cursor for the next page, absent on the last one. */
  next?: number;
}

/** Reply envelope of every `fm.api.*` request: `{ ok: true, result }` or `{ ok: false, error }`. */
export type ApiReply<T> = { ok: true; result: T } | { ok: false; error: WireError };

/** Result of `send`: the event is durably accepted. */
export interface SendResult {
  actor: string;
  seq: number;
  duplicate: boolean;
}
