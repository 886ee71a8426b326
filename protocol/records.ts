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

// ---------------------------------------------------------------------------------------------------------
// Replies of the index, cluster and connector verbs (shared by the node, the client and the connectors).

/** One actor as the actor index knows it: the last step the projector saw. Stored as JSON in KV `<prefix>_index`. */
export interface IndexEntry {
  program: string;
  key: string;
  /** XState state value after the step. */
  value: unknown;
  /** Snapshot status after the step: `active`, `done`, `error`, `stopped`. */
  status: string;
  step: number;
  /** Wall-clock time of the step, ms since the epoch. */
  updated: number;
}

/** One actor in a `list` page. */
export interface IndexedActor extends IndexEntry {
  actor: string;
}

/** A page of `list`, ordered by key; pass `next` as `after` for the following page. */
export interface ActorPage {
  program: string;
  actors: IndexedActor[];
  /** Actors matching the filters, over all pages. */
  total: number;
  /** Absent on the last page. */
  next?: string;
}

/** How far the index is behind the journal. */
export interface IndexLag {
  /** Journal records not yet in the index: not yet delivered to a projector, or delivered and not yet written. */
  records: number;
  /** Last journal stream sequence. */
  lastSeq: number;
  /**
   * Journal stream sequence up to which every record is projected (the consumer's ack floor). `lastSeq −
   * projectedSeq` can exceed `records` while a record handed to a projector that died waits to be handed out again.
   */
  projectedSeq: number;
  /** False when no projector ever ran (there is no consumer): then the index is empty and `records` counts the whole journal. */
  running: boolean;
}

/** How many actors of a program are in each state and status, as the index counts them. */
export interface ProgramCounts {
  program: string;
  total: number;
  /** Per state node (dotted path): an actor counts in its state and in each ancestor of it, and in each region of a parallel state. */
  states: Record<string, number>;
  statuses: Record<string, number>;
}

/** What `stats` returns: the counts and how far the index is behind. */
export interface ProgramStats extends ProgramCounts {
  lag: IndexLag;
}

/** The cluster as `cluster` returns it. */
export interface ClusterView {
  shards: number;
  replicas: number;
  nodes: { name: string; instance: string; host: string; pid: number; startedAt: number; draining: boolean; owns: number[] }[];
  owners: { shard: number; node: string | null; epoch: number; since: number; reason: string; from: string | null; pinned: string | null }[];
}

/** What `move` returns. */
export interface MoveResult {
  shard: number;
  actor?: string;
  from: string | null;
  to: string;
  epoch: number;
  /** Time from the pin to the new owner's record, ms. */
  ms: number;
  /** Other actors in the same shard, which moved too. */
  actors: number;
}

/** Input of `http.request`, as a program passes it to `invoke`. */
export interface HttpRequestInput {
  /** An absolute http: or https: URL, without credentials. */
  url: string;
  /** @default "GET" */
  method?: string;
  /** Request headers. `Idempotency-Key` defaults to the call id; `User-Agent` to the connector's. */
  headers?: Record<string, string>;
  /** A string is sent as is (`text/plain` unless a content-type is given); any other JSON value is sent as JSON. */
  body?: unknown;
  /** Time limit of one attempt, redirects and body included; exceeding it is retried. @default the connector's `defaultTimeoutMs` */
  timeoutMs?: number;
  /** Largest response body read, at most the connector's limit; beyond it the call fails with `FM_ERR_PAYLOAD_TOO_LARGE`. @default the connector's `maxResponseBytes` (1 MiB) */
  maxResponseBytes?: number;
}

/** Output of `http.request`, and `details` of its HTTP errors (a terminal 4xx). */
export interface HttpResponse {
  status: number;
  /** Response headers, lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  /** Parsed JSON when the content-type is JSON (`application/json`, `*+json`) and the body parses, else text. */
  body: unknown;
}
