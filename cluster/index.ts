// cluster/index.ts — the public face of the cluster: a node that takes part in shard ownership.
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../protocol/connect.js";
import { createSubjects } from "../protocol/subjects.js";
import { createNode, type FlowmetalNode, type NodeOptions } from "../node/node.js";
import { silentLogger } from "../node/logger.js";
import { serveClusterApi } from "./api.js";
import { createClusterPlacement, type ClusterPlacement } from "./controller.js";

export { createClusterPlacement, type ClusterPlacement, type ClusterPlacementOptions } from "./controller.js";
export { clusterView, moveShard, setDraining, unpinShard, type ClusterView, type MoveResult } from "./ops.js";
export { desiredOwner } from "./rendezvous.js";
export { serveClusterApi } from "./api.js";

export interface ClusterNodeOptions extends Omit<NodeOptions, "placement" | "nc"> {
  /** A node whose heartbeat is older than this loses its shards. @default 6000 */
  heartbeatTtlMs?: number;
  /** How long joining may keep failing transiently before the node gives up. @default 30000 */
  joinTimeoutMs?: number;
}

export interface ClusterNode extends FlowmetalNode {
  readonly placement: ClusterPlacement;
}

/**
 * Starts a node that joins the cluster on `servers`: it heartbeats, claims the shards rendezvous hashing
 * gives it, hands shards over when they are moved or it drains, and takes over shards of dead nodes.
 * Resolves once the node has joined (first heartbeat written); rejects with `FM_ERR_UNAVAILABLE` when it
 * cannot join, e.g. JetStream failing for longer than `joinTimeoutMs`.
 */
export async function createClusterNode(options: ClusterNodeOptions): Promise<ClusterNode> {
  const log = options.log ?? silentLogger;
  const nc: NatsConnection = await connectNats(options.servers, { name: `flowmetal-node-${options.name ?? process.pid}`, reconnectForever: true });
  try {
    const subjects = createSubjects(options.prefix);
    const placement = await createClusterPlacement({
      nc,
      log,
      ...(options.prefix ? { prefix: options.prefix } : {}),
      ...(options.replicas ? { replicas: options.replicas } : {}),
      ...(options.shards ? { shards: options.shards } : {}),
      ...(options.heartbeatTtlMs ? { heartbeatTtlMs: options.heartbeatTtlMs } : {}),
      ...(options.joinTimeoutMs ? { joinTimeoutMs: options.joinTimeoutMs } : {}),
      ...(options.metrics ? { metrics: options.metrics } : {}),
    });
    const node = await createNode({ ...options, nc, placement });
    // Resolved only once the node is in the cluster (heartbeat written), so "ready" means joined.
    await placement.joined.catch(async (err: unknown) => {
      await node.drain().catch(() => undefined);
      throw err;
    });
    const stopApi = serveClusterApi({ nc, jsm: await jetstreamManager(nc), subjects, buckets: placement.buckets, log });
    let done: Promise<void> | undefined;
    const drain = () =>
      (done ??= (async () => {
        await stopApi();
        await node.drain();
        await nc.drain().catch(() => undefined);
      })());
    return {
      ...node,
      name: node.name,
      programs: node.programs,
      functions: node.functions,
      closed: node.closed,
      placement,
      drain,
      close: drain,
      [Symbol.asyncDispose]: drain,
    };
  } catch (err) {
    await nc.close();
    throw err;
  }
}
