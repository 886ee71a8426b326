// node/metrics.ts — Prometheus metrics (prom-client): the runtime's Metrics seam plus gauges read at scrape time.
import type { JetStreamManager } from "@nats-io/jetstream";
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Metrics } from "../protocol/metrics.js";
import type { Subjects } from "../protocol/subjects.js";

/** Where scrape-time gauges read their values. Each is optional; a source that throws leaves its gauge unset. */
export interface MetricSources {
  /** Actors held in memory by this node (`FlowmetalNode.activeActors`). */
  activeActors?: () => number;
  /** Timers scheduled and not yet fired (see `countPendingTimers`). */
  timersPending?: () => Promise<number>;
  /** Journal records not yet in the actor index. */
  indexLag?: () => Promise<number>;
  /** Actors in the index, per program and status. */
  indexedActors?: () => { program: string; statuses: Record<string, number> }[];
}

/** Prometheus metrics for one process. */
export interface PromMetrics {
  /** Pass to `createNode` / `createClusterNode` (`metrics`). */
  readonly metrics: Metrics;
  /** Serve `registry.metrics()` with `registry.contentType` on `/metrics`. */
  readonly registry: Registry;
  /** Adds sources for the gauges read at scrape time; later sources replace earlier ones of the same name. */
  addSources(sources: MetricSources): void;
  /** Called by the projector after each batch (see `ProjectorOptions.onBatch`). */
  indexBatch(records: number, written: number, delayMs: number): void;
}

/** Options of {@link createPromMetrics}. */
export interface PromMetricsOptions {
  /** A registry to register into. @default a new one */
  registry?: Registry;
  /** Also collect prom-client's process and Node.js metrics (`process_*`, `nodejs_*`). @default true */
  defaultMetrics?: boolean;
}

const seconds = (ms: number) => ms / 1000;
// Steps are milliseconds (one JetStream round trip or a few); handoffs and calls can take seconds.
const fastBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const slowBuckets = [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Creates the Prometheus metrics: names `flowmetal_<area>_<what>_<unit>`, durations in seconds.
 * @example
 * const prom = createPromMetrics();
 * const node = await createNode({ servers, modules, metrics: prom.metrics });
 * prom.addSources({ activeActors: () => node.activeActors() });
 * app.get("/metrics", async () => prom.registry.metrics());
 */
export function createPromMetrics(options: PromMetricsOptions = {}): PromMetrics {
  const registry = options.registry ?? new Registry();
  if (options.defaultMetrics !== false) collectDefaultMetrics({ register: registry });
  const registers = [registry];
  const sources: MetricSources = {};

  const steps = new Counter({ name: "flowmetal_actor_steps_total", help: "Steps persisted, by program and outcome (ok, ignored, failed).", labelNames: ["program", "outcome"], registers });
  const stepSeconds = new Histogram({ name: "flowmetal_actor_step_duration_seconds", help: "Time from taking an input to its step persisted and its effects published.", labelNames: ["program"], buckets: fastBuckets, registers });
  const appendSeconds = new Histogram({ name: "flowmetal_journal_append_duration_seconds", help: "Time of one journal append (a fenced JetStream publish).", buckets: fastBuckets, registers });
  const effects = new Counter({ name: "flowmetal_effect_published_total", help: "Effects published after their step, by kind (emit, send, schedule, unschedule, call, cancel).", labelNames: ["kind"], registers });
  const skipped = new Counter({ name: "flowmetal_input_skipped_total", help: "Inputs that did not become a step, by reason (redelivered, stale, dead).", labelNames: ["reason"], registers });
  const resyncs = new Counter({ name: "flowmetal_consumer_resyncs_total", help: "Shard consumers recreated because a delivery went missing (inputs are then delivered again in order).", registers });
  const attempts = new Counter({ name: "flowmetal_function_attempts_total", help: "Function attempts run here, by function and outcome (ok, failed for good, retry).", labelNames: ["fn", "outcome"], registers });
  const attemptSeconds = new Histogram({ name: "flowmetal_function_attempt_duration_seconds", help: "Duration of one function attempt.", labelNames: ["fn"], buckets: slowBuckets, registers });
  const retries = new Counter({ name: "flowmetal_function_retries_total", help: "Function attempts that failed and will be retried.", labelNames: ["fn"], registers });
  const inFlight = new Gauge({ name: "flowmetal_function_calls_in_flight", help: "Function calls running in this process.", labelNames: ["fn"], registers });
  const owned = new Gauge({ name: "flowmetal_shard_owned", help: "Shards this node runs.", registers });
  const handoffs = new Counter({ name: "flowmetal_shard_handoffs_total", help: "Shards received from another node by a handoff.", registers });
  const handoffSeconds = new Histogram({ name: "flowmetal_shard_handoff_pause_seconds", help: "Time a handed-off shard had no running owner.", buckets: slowBuckets, registers });
  const failovers = new Counter({ name: "flowmetal_shard_failovers_total", help: "Shards of dead nodes taken over by this node.", registers });
  const projected = new Counter({ name: "flowmetal_index_records_projected_total", help: "Journal records taken by this node's index projector.", registers });
  const indexWrites = new Counter({ name: "flowmetal_index_writes_total", help: "Index entries written by this node's projector (records coalesced per actor).", registers });
  const indexDelay = new Gauge({ name: "flowmetal_index_delay_seconds", help: "Time from the newest step of the last projected batch to its index write.", registers });
  const running = new Set<number>();

  new Gauge({
    name: "flowmetal_actor_active",
    help: "Actors held in memory by this node (idle ones are passivated and cost nothing).",
    registers,
    collect() {
      if (sources.activeActors) this.set(safe(sources.activeActors, 0));
    },
  });
  new Gauge({
    name: "flowmetal_index_actors",
    help: "Actors in the actor index, by program and status (active ones not in memory are passivated).",
    labelNames: ["program", "status"],
    registers,
    collect() {
      this.reset();
      for (const p of safe(sources.indexedActors ?? (() => []), [])) {
        for (const [status, n] of Object.entries(p.statuses)) this.set({ program: p.program, status }, n);
      }
    },
  });
  new Gauge({
    name: "flowmetal_timer_pending",
    help: "Durable timers scheduled and not yet fired (all actors; from the inbox stream).",
    registers,
    async collect() {
      if (sources.timersPending) this.set(await sources.timersPending().catch(() => Number.NaN));
    },
  });
  new Gauge({
    name: "flowmetal_index_lag_records",
    help: "Journal records not yet in the actor index (not yet delivered to a projector, or not yet written).",
    registers,
    async collect() {
      if (sources.indexLag) this.set(await sources.indexLag().catch(() => Number.NaN));
    },
  });

  const metrics: Metrics = {
    stepTaken(program, outcome, totalMs, appendMs) {
      steps.inc({ program, outcome });
      stepSeconds.observe({ program }, seconds(totalMs));
      appendSeconds.observe(seconds(appendMs));
    },
    effectPublished(kind) {
      effects.inc({ kind });
    },
    inputSkipped(reason) {
      skipped.inc({ reason });
    },
    consumerResynced() {
      resyncs.inc();
    },
    callAttempted(fn, outcome, ms) {
      attempts.inc({ fn, outcome });
      attemptSeconds.observe({ fn }, seconds(ms));
      if (outcome === "retry") retries.inc({ fn });
    },
    callsInFlight(fn, delta) {
      inFlight.inc({ fn }, delta);
    },
    shardRunning(shard, isRunning) {
      if (isRunning) running.add(shard);
      else running.delete(shard);
      owned.set(running.size);
    },
    handoff(pauseMs) {
      handoffs.inc();
      handoffSeconds.observe(seconds(pauseMs));
    },
    failover() {
      failovers.inc();
    },
  };

  return {
    metrics,
    registry,
    addSources(s) {
      Object.assign(sources, s);
    },
    indexBatch(records, written, delayMs) {
      projected.inc(records);
      indexWrites.inc(written);
      indexDelay.set(seconds(delayMs));
    },
  };
}

function safe<T>(fn: () => T, fallback: T): T {
  try {
    return fn();
  } catch {
    return fallback;
  }
}

/**
 * Counts pending durable timers: each is one message schedule on its own `<prefix>.timer.…` subject in the
 * inbox stream, so this is the number of those subjects (a stream info request filtered to them, paged
 * by the server for very many timers: meant for a scrape every few seconds, not for every request).
 */
export async function countPendingTimers(jsm: JetStreamManager, subjects: Subjects): Promise<number> {
  const info = await jsm.streams.info(subjects.streams.inbox, { subjects_filter: `${subjects.prefix}.timer.>` });
  return Object.keys(info.state.subjects ?? {}).length;
}
