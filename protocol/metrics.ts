// protocol/metrics.ts — the metrics seam: every layer reports what happened here; node/metrics.ts turns it into Prometheus metrics.
import type { Effect, StepOutcome } from "./records.js";

/** What the runtime reports. All durations in milliseconds. Implementations must be cheap and never throw. */
export interface Metrics {
  /** A step was persisted (and its effects published). */
  stepTaken(program: string, outcome: StepOutcome, totalMs: number, appendMs: number): void;
  /** An effect was published. */
  effectPublished(kind: Effect["kind"]): void;
  /** An input was not turned into a step: redelivered (already in the journal), stale (timer or result no longer pending), dead (dead-lettered). */
  inputSkipped(reason: "redelivered" | "stale" | "dead"): void;
  /** A shard consumer skipped a delivery (one went missing on its way) and was recreated to keep inputs in order. */
  consumerResynced(shard: number): void;
  /** A function attempt ended: ok, failed for good, or to be retried. */
  callAttempted(fn: string, outcome: "ok" | "failed" | "retry", ms: number): void;
  /** Calls running in this process changed by `delta`. */
  callsInFlight(fn: string, delta: number): void;
  /** A shard started (owned) or stopped running here. */
  shardRunning(shard: number, running: boolean): void;
  /** A handoff finished on the receiving node, after `pauseMs` without an owner running the shard. */
  handoff(pauseMs: number): void;
  /** This node took over a shard of a dead node. */
  failover(): void;
}

const noop = () => {};
/** Reports nothing. */
export const noMetrics: Metrics = {
  stepTaken: noop,
  effectPublished: noop,
  inputSkipped: noop,
  consumerResynced: noop,
  callAttempted: noop,
  callsInFlight: noop,
  shardRunning: noop,
  handoff: noop,
  failover: noop,
};
