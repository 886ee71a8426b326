// test/admin/cluster.test.ts — the admin API's cluster view over real cluster nodes: nodes, shards, owners and a handoff.
import type { NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClusterNode, type ClusterNode } from "../../cluster/index.js";
import { buildAdminApp } from "../../node/admin/server.js";
import { createClient, type Client } from "../../node/client/index.js";
import { connectNats } from "../../protocol/connect.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";
import { ticker } from "./programs.js";

let nats: NatsServer;
let nc: NatsConnection;
let fm: Client;
const nodes: ClusterNode[] = [];

beforeAll(async () => {
  nats = await startNatsServer();
  for (const name of ["node-a", "node-b"]) nodes.push(await createClusterNode({ servers: nats.url, name, modules: [ticker], shards: 6, heartbeatTtlMs: 1500 }));
  nc = await connectNats(nats.url, { name: "test" });
  fm = await createClient({ servers: nats.url });
  await waitFor(async () => (await fm.cluster()).owners.every((o) => o.node !== null) && nodes.every((n) => n.ownedShards().length > 0), { timeoutMs: 20_000, what: "shards to settle" });
});
afterAll(async () => {
  await fm?.close();
  for (const n of nodes) await n.close().catch(() => undefined);
  await nc?.close();
  await nats?.[Symbol.asyncDispose]();
});

describe("admin API cluster view", () => {
  it("shows nodes, shards, owners and the handoff of a moved shard", async () => {
    const { app, stop } = await buildAdminApp({ nc, node: nodes[0]!, programs: [ticker] });
    try {
      const before = (await app.inject({ url: "/api/cluster" })).json() as { clustered: boolean; self: string; shards: number; nodes: { name: string; owns: number[] }[]; owners: { shard: number; node: string }[] };
      expect(before).toMatchObject({ clustered: true, self: "node-a", shards: 6, replicas: 1 });
      expect(before.nodes.map((n) => n.name).sort()).toEqual(["node-a", "node-b"]);
      expect(before.owners).toHaveLength(6);
      const shard = before.owners.find((o) => o.node === "node-a")!.shard;
      await fm.move(String(shard), "node-b");
      const after = (await app.inject({ url: "/api/cluster" })).json() as { handoffs: { shard: number; from: string; to: string; epoch: number; at: number; reason: string }[] };
      expect(after.handoffs[0]).toMatchObject({ shard, from: "node-a", to: "node-b" });
      expect(after.handoffs[0]!.epoch).toBeGreaterThan(1);
    } finally {
      await stop();
    }
  });
});
