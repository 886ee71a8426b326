// cluster/state.ts — the cluster's records in KV: config, node heartbeats, shard owners, pins and drains.
import { Kvm, type KV, type KvEntry } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodePayload, encodePayload } from "../protocol/codec.js";
import { whenAvailable } from "../protocol/connect.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";

/** Fixed when the cluster is initialised. */
export interface ClusterConfig {
  shards: number;
  replicas: number;
  createdAt: number;
}

/** A live node, written by the node itself every heartbeat; gone when its TTL runs out. */
export interface NodeRecord {
  name: string;
  /** Random per process: a restarted node with the same name is a different instance. */
  instance: string;
  startedAt: number;
  host: string;
  pid: number;
  /** Last heartbeat, node's clock (for display only; liveness is the KV TTL). */
  at: number;
}

/** Who owns a shard. Never deleted, so epochs only grow. `node: null` means released. */
export interface ShardRecord {
  node: string | null;
  instance: string | null;
  epoch: number;
  /** When this record was written (ms since the epoch). */
  since: number;
  /** For a handoff: when the previous owner stopped intake, so the new one can log the pause. */
  handoffStartedAt?: number;
  /** Previous owner, for the cluster view and logs. */
  from?: string | null;
  /** Why it changed: claim, handoff, failover, release. */
  reason: string;
}

export interface Pin {
  node: string;
  at: number;
}

export interface ClusterBuckets {
  config: KV;
  nodes: KV;
  shards: KV;
  /** `s.<n>` → Pin, `drain.<node>` → { at } */
  control: KV;
  heartbeatTtlMs: number;
}

export interface BucketOptions {
  prefix?: string;
  replicas?: number;
  /** A node whose heartbeat is older than this is dead. @default 6000 */
  heartbeatTtlMs?: number;
}

export const shardKey = (shard: number) => `s.${shard}`;
export const drainKey = (node: string) => `drain.${node}`;

export function encode(v: unknown): Uint8Array {
  return encodePayload(v, "json");
}

export function decode<T>(e: KvEntry | null | undefined): T | undefined {
  if (!e || e.operation !== "PUT" || e.value.length === 0) return undefined;
  return decodePayload(e.value, "json") as T;
}

async function bucket(kvm: Kvm, name: string, opts: Record<string, unknown>): Promise<KV> {
  try {
    return await whenAvailable(() => kvm.create(name, opts));
  } catch (err) {
    // An existing bucket with other settings (e.g. a TTL chosen by an earlier version): use it as it is.
    if (/already in use|exists/i.test(String((err as Error).message))) return whenAvailable(() => kvm.open(name));
    throw new FlowmetalError(ErrorCode.Unavailable, `cannot open KV bucket ${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Opens (creating if needed) the cluster's KV buckets. */
export async function openBuckets(nc: NatsConnection, options: BucketOptions = {}): Promise<ClusterBuckets> {
  const prefix = options.prefix ?? "fm";
  const replicas = options.replicas ?? 1;
  const heartbeatTtlMs = options.heartbeatTtlMs ?? 6_000;
  const kvm = new Kvm(nc);
  const [config, nodes, shards, control] = await Promise.all([
    bucket(kvm, `${prefix}_cluster`, { replicas, history: 1 }),
    // Entries expire after the TTL, and the expiry leaves a marker that watchers see.
    bucket(kvm, `${prefix}_nodes`, { replicas, history: 1, ttl: heartbeatTtlMs, markerTTL: Math.max(heartbeatTtlMs, 1000) }),
    bucket(kvm, `${prefix}_shards`, { replicas, history: 5 }),
    bucket(kvm, `${prefix}_control`, { replicas, history: 1 }),
  ]);
  return { config, nodes, shards, control, heartbeatTtlMs };
}

/**
 * Initialises the cluster configuration once; later calls must agree on the shard count (it cannot change
 * under a live cluster: actors would change shards).
 */
export async function initCluster(b: ClusterBuckets, want: { shards: number; replicas: number }): Promise<ClusterConfig> {
  const cfg: ClusterConfig = { shards: want.shards, replicas: want.replicas, createdAt: Date.now() };
  try {
    await whenAvailable(() => b.config.create("config", encode(cfg)));
    return cfg;
  } catch {
    const existing = decode<ClusterConfig>(await whenAvailable(() => b.config.get("config")));
    if (!existing) throw new FlowmetalError(ErrorCode.Unavailable, "cluster config exists but cannot be read");
    if (existing.shards !== want.shards) {
      throw new FlowmetalError(
        ErrorCode.BadRequest,
        `this cluster has ${existing.shards} shards; it cannot be changed to ${want.shards} while it holds actors (start nodes without --shards, or use a new subject prefix)`,
      );
    }
    return existing;
  }
}

/** Reads every entry of a bucket (keys matching `filter`). */
export async function readAll<T>(kv: KV, filter = ">"): Promise<Map<string, { value: T; revision: number }>> {
  const out = new Map<string, { value: T; revision: number }>();
  const keys: string[] = [];
  for await (const k of await kv.keys(filter)) keys.push(k);
  await Promise.all(
    keys.map(async (k) => {
      const e = await kv.get(k);
      const v = decode<T>(e);
      if (e && v !== undefined) out.set(k, { value: v, revision: e.revision });
    }),
  );
  return out;
}
