// cluster/controller.ts — one per node: heartbeats, and the shard ownership rules (claim, handoff, failover) as a Placement.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { performance } from "node:perf_hooks";
import type { KV, KvEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import type { Logger } from "../node/logger.js";
import { silentLogger } from "../node/logger.js";
import type { Placement, ShardEvent } from "../node/node.js";
import { whenAvailable } from "../protocol/connect.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import { noMetrics, type Metrics } from "../protocol/metrics.js";
import { desiredOwner } from "./rendezvous.js";
import {
  decode,
  drainKey,
  encode,
  initCluster,
  openBuckets,
  readAll,
  shardKey,
  type BucketOptions,
  type ClusterBuckets,
  type NodeRecord,
  type Pin,
  type ShardRecord,
} from "./state.js";

export interface ClusterPlacementOptions extends BucketOptions {
  nc: NatsConnection;
  log?: Logger;
  /** Shards of a new cluster; an existing cluster keeps its own. @default 16 */
  shards?: number;
  /** How often ownership is re-evaluated (changes in KV also trigger it). @default 200 */
  tickMs?: number;
  /** How long joining may keep failing transiently (JetStream electing leaders, timeouts) before it fails. @default 30000 */
  joinTimeoutMs?: number;
  metrics?: Metrics;
}

interface Cached<T> {
  value: T;
  revision: number;
  /** When this process last learned of this revision (monotonic clock). */
  seenAt?: number;
}

/** What this node's controller knows and does; also read by the cluster API. */
export interface ClusterPlacement extends Placement {
  readonly buckets: ClusterBuckets;
  readonly instance: string;
  /** Shards this node runs now, with their epochs. */
  running(): Map<number, number>;
  /**
   * Resolves once this node has joined the cluster — its first heartbeat written and ownership evaluated —
   * after `watch` started it; rejects with the reason if it could not join within `joinTimeoutMs`.
   */
  readonly joined: Promise<void>;
}

/**
 * Creates the cluster placement for a node. Ownership lives in KV as `{ node, instance, epoch }` per shard,
 * changed only by compare-and-set, with epochs that only grow:
 * - claim: a shard with no live owner goes to its desired node (rendezvous hashing, operator pins first);
 * - handoff: an owner that is no longer the desired node stops intake, finishes its steps, then writes the
 *   record over to the desired node with epoch + 1;
 * - failover: when a node's heartbeat expires, the desired node claims its shards with epoch + 1.
 * A node appends only while its lease (last heartbeat + TTL/2, on its monotonic clock) holds; JetStream's
 * per-actor expected-sequence check rejects anything a stale owner still tries.
 */
export async function createClusterPlacement(options: ClusterPlacementOptions): Promise<ClusterPlacement> {
  const { nc } = options;
  const log = options.log ?? silentLogger;
  const metrics = options.metrics ?? noMetrics;
  const buckets = await openBuckets(nc, options);
  const ttl = buckets.heartbeatTtlMs;
  const tickMs = options.tickMs ?? 200;
  const instance = randomUUID();

  const nodes = new Map<string, Cached<NodeRecord>>();
  const shards = new Map<number, Cached<ShardRecord>>();
  const pins = new Map<number, string>();
  const drains = new Set<string>();
  const running = new Map<number, number>();
  const releasing = new Map<number, { epoch: number; target: string; startedAt: number }>();
  const cooldown = new Map<number, number>();
  const queue: ShardEvent[] = [];
  let wake: (() => void) | undefined;
  let name = "";
  let shardCount = 0;
  let leaseUntil = 0;
  let closed = false;
  let ticking = false;
  let tickAgain = false;
  const stoppers: (() => void)[] = [];
  const join = {} as { promise: Promise<void>; resolve: () => void; reject: (err: Error) => void };
  join.promise = new Promise<void>((resolve, reject) => Object.assign(join, { resolve, reject }));
  join.promise.catch(() => undefined); // also thrown by watch(); this only keeps an unawaited rejection quiet

  const emit = (ev: ShardEvent) => {
    queue.push(ev);
    wake?.();
  };
  const leaseValid = () => performance.now() < leaseUntil;

  function apply<T>(map: Map<string, Cached<T>> | Map<number, Cached<T>>, key: string | number, e: KvEntry): void {
    const m = map as Map<string | number, Cached<T>>;
    const cur = m.get(key);
    if (cur && cur.revision >= e.revision) return;
    const v = decode<T>(e);
    if (v === undefined) m.delete(key);
    else m.set(key, { value: v, revision: e.revision, seenAt: performance.now() });
  }

  /** Reads every shard's owner record and keeps those newer than what this node knows; true if any was. */
  async function readOwners(): Promise<boolean> {
    let changed = false;
    for (const [k, v] of await readAll<ShardRecord>(buckets.shards)) {
      const shard = Number(k.slice(2));
      const cur = shards.get(shard);
      if (cur && cur.revision >= v.revision) continue;
      shards.set(shard, v);
      changed = true;
      if (cur) log.debug({ shard, owner: v.value.node, epoch: v.value.epoch }, "shard owner changed (read afresh)");
    }
    return changed;
  }

  /**
   * Reads the heartbeats and shard owners afresh. The KV watches normally report joins, beats, expiries and
   * ownership changes, but a watch can stall (it did once during a partition): a node's death would go
   * unnoticed, its shards unowned forever, or a shard handed to this node never started. A node missing
   * from the bucket that this process has not heard from for half a TTL is dead.
   */
  async function poll(): Promise<void> {
    try {
      const [found, ownersChanged] = await Promise.all([readAll<NodeRecord>(buckets.nodes), readOwners()]);
      const now = performance.now();
      let changed = ownersChanged;
      for (const [k, v] of found) {
        const cur = nodes.get(k);
        if (!cur || cur.revision < v.revision) nodes.set(k, { ...v, seenAt: now });
      }
      for (const [k, cur] of nodes) {
        if (k !== name && !found.has(k) && now - (cur.seenAt ?? 0) > ttl / 2) {
          nodes.delete(k);
          changed = true;
          log.info({ node: k }, "node's heartbeat is gone (noticed by polling)");
        }
      }
      if (changed) void tick();
    } catch (err) {
      log.debug({ err: String((err as Error)?.message ?? err) }, "polling the cluster's records failed");
    }
  }

  function onControl(e: KvEntry): void {
    const v = decode<Pin | { at: number }>(e);
    if (e.key.startsWith("s.")) {
      const s = Number(e.key.slice(2));
      if (v && "node" in v) pins.set(s, v.node);
      else pins.delete(s);
    } else if (e.key.startsWith("drain.")) {
      const n = e.key.slice("drain.".length);
      if (v) drains.add(n);
      else drains.delete(n);
    }
  }

  async function follow(kv: KV, on: (e: KvEntry) => void): Promise<void> {
    const w = await kv.watch();
    stoppers.push(() => w.stop());
    void (async () => {
      for await (const e of w) {
        on(e);
        void tick();
      }
    })().catch((err) => log.warn({ err: String(err) }, "kv watch ended"));
  }

  /** Writes this node's heartbeat; a failure is logged (the next beat tries again), or thrown with `mustSucceed`. */
  async function heartbeat(mustSucceed = false): Promise<void> {
    const t0 = performance.now();
    const lapsed = t0 >= leaseUntil;
    const rec: NodeRecord = { name, instance, startedAt, host: hostname(), pid: process.pid, at: Date.now() };
    try {
      const revision = await buckets.nodes.put(name, encode(rec), { timeout: Math.max(500, ttl / 3) });
      const known = nodes.get(name);
      if (!known || known.revision < revision) nodes.set(name, { value: rec, revision, seenAt: performance.now() });
      if (lapsed && leaseUntil > 0) {
        // After a lapse (a pause, a partition) others may have taken shards: read ownership afresh and stop
        // what is no longer ours before appends may go on.
        await readOwners();
        for (const [s, epoch] of running) {
          const cur = shards.get(s)?.value;
          if (!cur || cur.node !== name || cur.instance !== instance || cur.epoch !== epoch) {
            running.delete(s);
            log.warn({ shard: s, epoch, owner: cur?.node }, "lease lapsed and the shard moved on, stopping it");
            emit({ shard: s, epoch, owned: false });
          }
        }
        log.info({ node: name }, "lease regained");
      }
      leaseUntil = t0 + ttl / 2;
    } catch (err) {
      if (mustSucceed) throw err;
      log.warn({ node: name, err: String((err as Error).message) }, "heartbeat failed");
    }
  }
  const startedAt = Date.now();

  function ownerAlive(r: ShardRecord): boolean {
    if (!r.node) return false;
    const n = nodes.get(r.node);
    return n !== undefined && n.value.instance === r.instance;
  }

  async function write(shard: number, rec: ShardRecord, prev: Cached<ShardRecord> | undefined): Promise<boolean> {
    try {
      const key = shardKey(shard);
      const revision = prev ? await buckets.shards.update(key, encode(rec), prev.revision) : await buckets.shards.create(key, encode(rec));
      shards.set(shard, { value: rec, revision });
      return true;
    } catch (err) {
      log.debug({ shard, err: String((err as Error).message) }, "ownership change lost a race");
      return false;
    }
  }

  async function evaluate(): Promise<void> {
    if (!leaseValid()) return; // without a lease this node may not claim or run anything new
    const eligible = [...nodes.keys()].filter((n) => !drains.has(n)).sort();
    const now = Date.now();
    for (let s = 0; s < shardCount; s++) {
      if (closed) return;
      const cur = shards.get(s);
      const want = desiredOwner(s, eligible, pins.get(s));
      const mine = cur !== undefined && cur.value.node === name && cur.value.instance === instance;
      if (mine) {
        const epoch = cur.value.epoch;
        if (releasing.has(s)) continue;
        if (running.get(s) !== epoch && (cooldown.get(s) ?? 0) <= now) {
          running.set(s, epoch);
          if (cur.value.reason === "handoff" && cur.value.handoffStartedAt) {
            log.info({ shard: s, epoch, from: cur.value.from, pauseMs: now - cur.value.handoffStartedAt }, "shard handed over");
            metrics.handoff(now - cur.value.handoffStartedAt);
          }
          emit({ shard: s, epoch, owned: true });
        }
        if (want !== undefined && want !== name && running.get(s) === epoch) {
          releasing.set(s, { epoch, target: want, startedAt: now });
          running.delete(s);
          log.info({ shard: s, epoch, to: want }, "handing shard over");
          emit({ shard: s, epoch, owned: false });
        }
        continue;
      }
      const was = running.get(s);
      if (was !== undefined) {
        running.delete(s);
        log.warn({ shard: s, epoch: was, owner: cur?.value.node }, "shard owned elsewhere now, stopping it");
        emit({ shard: s, epoch: was, owned: false });
      }
      if (releasing.has(s) || want !== name) continue;
      if (cur && ownerAlive(cur.value)) continue;
      const epoch = (cur?.value.epoch ?? 0) + 1;
      const reason = cur?.value.node ? "failover" : "claim";
      const rec: ShardRecord = { node: name, instance, epoch, since: now, from: cur?.value.node ?? null, reason };
      if (await write(s, rec, cur)) {
        if (reason === "failover") {
          log.info({ shard: s, epoch, from: cur?.value.node }, "took over shard of a dead node");
          metrics.failover();
        }
        running.set(s, epoch);
        emit({ shard: s, epoch, owned: true });
      }
    }
  }

  async function tick(): Promise<void> {
    if (ticking) {
      tickAgain = true;
      return;
    }
    ticking = true;
    try {
      do {
        tickAgain = false;
        await evaluate();
      } while (tickAgain && !closed);
    } catch (err) {
      log.warn({ err: String(err) }, "ownership evaluation failed");
    } finally {
      ticking = false;
    }
  }

  /** Reads the cluster's records and starts following them; a failed attempt stops what it started. */
  async function load(count: number): Promise<void> {
    const started = stoppers.length;
    try {
      const cfg = await initCluster(buckets, { shards: options.shards ?? count, replicas: options.replicas ?? 1 });
      shardCount = cfg.shards;
      for (const [k, v] of await readAll<NodeRecord>(buckets.nodes)) nodes.set(k, { ...v, seenAt: performance.now() });
      await readOwners();
      await follow(buckets.nodes, (e) => apply(nodes, e.key, e));
      await follow(buckets.shards, (e) => apply(shards, Number(e.key.slice(2)), e));
      await follow(buckets.control, onControl);
    } catch (err) {
      for (const stop of stoppers.splice(started)) stop();
      throw err;
    }
  }

  /**
   * Joins: loads the records and writes the first heartbeat (each retried while JetStream fails
   * transiently), then evaluates ownership. Before this retried, one timeout here left a process that had printed "ready" but
   * never heartbeat nor owned anything, for good; now it either joins or `joined` rejects with the reason.
   */
  async function start(node: string, count: number): Promise<void> {
    name = node;
    const deadline = Date.now() + (options.joinTimeoutMs ?? 30_000);
    const retrying = (what: string) => ({
      stop: () => closed,
      onRetry: (err: unknown, retryInMs: number) => log.warn({ err: String((err as Error)?.message ?? err), retryInMs }, `${what} failed, retrying`),
    });
    try {
      await whenAvailable(() => load(count), deadline - Date.now(), retrying("reading the cluster's records"));
      await whenAvailable(() => heartbeat(true), deadline - Date.now(), retrying("the first heartbeat"));
      const hb = setInterval(() => void heartbeat(), Math.max(100, Math.floor(ttl / 3)));
      const tk = setInterval(() => void tick(), tickMs);
      const poller = setInterval(() => void poll(), Math.max(250, Math.floor(ttl / 2)));
      stoppers.push(() => clearInterval(hb), () => clearInterval(tk), () => clearInterval(poller));
      await tick();
    } catch (err) {
      const e = new FlowmetalError(ErrorCode.Unavailable, `node ${node} could not join the cluster: ${(err as Error)?.message ?? err}`, { cause: err });
      join.reject(e);
      throw e;
    }
    join.resolve();
  }

  const placement: ClusterPlacement = {
    buckets,
    instance,
    joined: join.promise,
    running: () => new Map(running),
    async *watch(node, count) {
      await start(node, count);
      while (!closed) {
        const ev = queue.shift();
        if (ev) {
          yield ev;
          continue;
        }
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
      }
    },
    released(shard, epoch) {
      const r = releasing.get(shard);
      if (!r || r.epoch !== epoch) return;
      void (async () => {
        const cur = shards.get(shard);
        const target = nodes.get(r.target);
        if (cur && cur.value.node === name && cur.value.epoch === epoch) {
          const rec: ShardRecord = target
            ? { node: r.target, instance: target.value.instance, epoch: epoch + 1, since: Date.now(), handoffStartedAt: r.startedAt, from: name, reason: "handoff" }
            : { node: null, instance: null, epoch: epoch + 1, since: Date.now(), from: name, reason: "release" };
          await write(shard, rec, cur);
        }
        releasing.delete(shard);
        void tick();
      })();
    },
    fenced(shard, epoch) {
      if (running.get(shard) === epoch) running.delete(shard);
      cooldown.set(shard, Date.now() + 1000);
      log.warn({ shard, epoch }, "shard fenced off");
    },
    canAppend(shard, epoch) {
      if (running.get(shard) !== epoch && releasing.get(shard)?.epoch !== epoch) return false;
      return leaseValid() ? true : "wait";
    },
    async close() {
      if (closed) return;
      closed = true;
      wake?.();
      for (const stop of stoppers) stop();
      // Give the shards back at once instead of letting the others wait for the heartbeat to expire.
      for (const [s, cur] of shards) {
        if (cur.value.node === name && cur.value.instance === instance) {
          await write(s, { node: null, instance: null, epoch: cur.value.epoch + 1, since: Date.now(), from: name, reason: "release" }, cur);
        }
      }
      if (leaseUntil > 0) await buckets.nodes.delete(name).catch(() => undefined); // only a heartbeat it wrote
      running.clear();
    },
  };
  return placement;
}

export { drainKey, shardKey };
