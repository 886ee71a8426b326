// cluster/ops.ts — operator actions on the cluster: view, move a shard (or an actor's shard), drain a node.
import type { JetStreamManager } from "@nats-io/jetstream";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import type { ClusterView, MoveResult } from "../protocol/records.js";
import { parseActorAddress, shardOf, type Subjects } from "../protocol/subjects.js";
import { decode, drainKey, encode, readAll, shardKey, type ClusterBuckets, type ClusterConfig, type NodeRecord, type Pin, type ShardRecord } from "./state.js";

export type { ClusterView, MoveResult };

export async function readConfig(b: ClusterBuckets): Promise<ClusterConfig> {
  const cfg = decode<ClusterConfig>(await b.config.get("config"));
  if (!cfg) throw new FlowmetalError(ErrorCode.Unavailable, "the cluster is not initialised: start a node first");
  return cfg;
}

/** Nodes, shards, owners and epochs, as the KV records say right now. */
export async function clusterView(b: ClusterBuckets): Promise<ClusterView> {
  const cfg = await readConfig(b);
  const [nodes, shards, control] = await Promise.all([readAll<NodeRecord>(b.nodes), readAll<ShardRecord>(b.shards), readAll<Pin | { at: number }>(b.control)]);
  const owners: ClusterView["owners"] = [];
  for (let s = 0; s < cfg.shards; s++) {
    const r = shards.get(shardKey(s))?.value;
    const pin = control.get(shardKey(s))?.value as Pin | undefined;
    owners.push({ shard: s, node: r?.node ?? null, epoch: r?.epoch ?? 0, since: r?.since ?? 0, reason: r?.reason ?? "unowned", from: r?.from ?? null, pinned: pin?.node ?? null });
  }
  return {
    shards: cfg.shards,
    replicas: cfg.replicas,
    nodes: [...nodes.values()]
      .map(({ value: n }) => ({
        name: n.name,
        instance: n.instance,
        host: n.host,
        pid: n.pid,
        startedAt: n.startedAt,
        draining: control.has(drainKey(n.name)),
        owns: owners.filter((o) => o.node === n.name).map((o) => o.shard),
      }))
      .sort((x, y) => x.name.localeCompare(y.name)),
    owners,
  };
}

async function liveNode(b: ClusterBuckets, node: string): Promise<NodeRecord> {
  const n = decode<NodeRecord>(await b.nodes.get(node));
  if (!n) {
    const live = [...(await readAll<NodeRecord>(b.nodes)).keys()];
    throw new FlowmetalError(ErrorCode.BadRequest, `no live node '${node}' (live: ${live.join(", ") || "none"})`);
  }
  return n;
}

/** Resolves `<shard number>` or `<program>/<key>` to a shard. */
export async function resolveShard(b: ClusterBuckets, target: string): Promise<{ shard: number; actor?: string }> {
  const cfg = await readConfig(b);
  if (/^\d+$/.test(target)) {
    const shard = Number(target);
    if (shard >= cfg.shards) throw new FlowmetalError(ErrorCode.BadRequest, `shard ${shard} does not exist (this cluster has shards 0-${cfg.shards - 1})`);
    return { shard };
  }
  const a = parseActorAddress(target);
  return { shard: shardOf(a, cfg.shards), actor: target };
}

/** Actors with a journal in `shard` (reads the journal stream's subject list: an admin operation). */
export async function actorsInShard(jsm: JetStreamManager, subjects: Subjects, shard: number, shards: number): Promise<string[]> {
  const info = await jsm.streams.info(subjects.streams.journal, { subjects_filter: `${subjects.prefix}.log.>` });
  const out: string[] = [];
  for (const subj of Object.keys(info.state.subjects ?? {})) {
    const [, , program, key] = subj.split(".");
    if (program && key && shardOf({ program, key } as never, shards) === shard) out.push(`${program}/${key}`);
  }
  return out.sort();
}

/** Pins a shard to `node` and waits (up to `timeoutMs`) until that node owns it. */
export async function moveShard(
  b: ClusterBuckets,
  jsm: JetStreamManager,
  subjects: Subjects,
  target: string,
  node: string,
  timeoutMs = 30_000,
): Promise<MoveResult> {
  const { shard, actor } = await resolveShard(b, target);
  await liveNode(b, node);
  const cfg = await readConfig(b);
  const before = decode<ShardRecord>(await b.shards.get(shardKey(shard)));
  const t0 = Date.now();
  await b.control.put(shardKey(shard), encode({ node, at: t0 } satisfies Pin));
  let now = before;
  while (!(now?.node === node)) {
    if (Date.now() - t0 > timeoutMs) {
      throw new FlowmetalError(ErrorCode.Timeout, `shard ${shard} is pinned to ${node} but still owned by ${now?.node ?? "nobody"} after ${timeoutMs} ms; it will move when that node lets go`);
    }
    await new Promise((r) => setTimeout(r, 50));
    now = decode<ShardRecord>(await b.shards.get(shardKey(shard)));
  }
  const actors = await actorsInShard(jsm, subjects, shard, cfg.shards);
  const res: MoveResult = { shard, from: before?.node ?? null, to: node, epoch: now.epoch, ms: Date.now() - t0, actors: actors.filter((a) => a !== actor).length };
  if (actor) res.actor = actor;
  return res;
}

/** Removes the pin of a shard: it goes back to where rendezvous hashing puts it. */
export async function unpinShard(b: ClusterBuckets, target: string): Promise<{ shard: number }> {
  const { shard } = await resolveShard(b, target);
  await b.control.delete(shardKey(shard));
  return { shard };
}

/** Marks a node as draining (its shards move away) or, with `undo`, takes it back. Returns shards it still owns. */
export async function setDraining(b: ClusterBuckets, node: string, undo = false): Promise<{ node: string; draining: boolean; shardsLeft: number[] }> {
  if (undo) await b.control.delete(drainKey(node));
  else {
    await liveNode(b, node);
    await b.control.put(drainKey(node), encode({ at: Date.now() }));
  }
  const view = await clusterView(b);
  return { node, draining: !undo, shardsLeft: view.owners.filter((o) => o.node === node).map((o) => o.shard) };
}
