import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { clusterView, createClusterNode, createClusterPlacement, type ClusterNode } from "../../cluster/index.js";
import { desiredOwner } from "../../cluster/rendezvous.js";
import { createClient, type Client } from "../../node/client/index.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import { shardOf } from "../../protocol/subjects.js";
import { counter } from "../fixtures/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { withFaults } from "../support/faulty-connection.js";
import { waitFor } from "../support/wait.js";

const SHARDS = 12;
let nats: NatsServer;
let fm: Client;
const nodes = new Map<string, ClusterNode>();

async function start(name: string) {
  const n = await createClusterNode({ servers: nats.url, name, modules: [counter], shards: SHARDS, heartbeatTtlMs: 1500 });
  nodes.set(name, n);
  return n;
}

async function settled(expectNodes: string[]) {
  await waitFor(async () => {
    const v = await fm.cluster();
    const live = v.nodes.map((n) => n.name).sort();
    if (live.join() !== [...expectNodes].sort().join()) return false;
    // Every shard has a live owner, and each node runs exactly the shards the records give it.
    if (!v.owners.every((o) => o.node !== null && expectNodes.includes(o.node))) return false;
    return expectNodes.every((n) => {
      const owned = v.owners.filter((o) => o.node === n).map((o) => o.shard).sort((a, b) => a - b);
      return JSON.stringify(nodes.get(n)!.ownedShards()) === JSON.stringify(owned);
    });
  }, { timeoutMs: 20_000, what: `shards settled on ${expectNodes.join(", ")}` });
}

beforeAll(async () => {
  nats = await startNatsServer();
  await start("node-a");
  fm = await createClient({ servers: nats.url });
  await start("node-b");
  await start("node-c");
});
afterAll(async () => {
  await fm?.close();
  for (const n of nodes.values()) await n.close().catch(() => undefined);
  await nats?.[Symbol.asyncDispose]();
});

describe("rendezvous placement", () => {
  it("moves only the shards a new node wins", () => {
    const before = Array.from({ length: 64 }, (_, s) => desiredOwner(s, ["a", "b", "c"]));
    const after = Array.from({ length: 64 }, (_, s) => desiredOwner(s, ["a", "b", "c", "d"]));
    const moved = before.filter((o, s) => o !== after[s]);
    expect(moved.length).toBeGreaterThan(0);
    expect(after.filter((o, s) => o !== before[s]).every((o) => o === "d")).toBe(true);
    expect(desiredOwner(3, ["a", "b"], "b")).toBe("b");
    expect(desiredOwner(3, ["a", "b"], "gone")).toBe(desiredOwner(3, ["a", "b"]));
  });
});

describe("cluster", () => {
  it("spreads the shards over the live nodes, one owner each", async () => {
    await settled(["node-a", "node-b", "node-c"]);
    const v = await fm.cluster();
    expect(v.shards).toBe(SHARDS);
    for (const n of v.nodes) expect(n.owns.length).toBeGreaterThan(0);
  });

  it("moves an actor's shard live while events stream in, each event exactly once", async () => {
    const actor = "counter/mover";
    await fm.ask(actor, { type: "INC" });
    const shard = shardOf({ program: "counter", key: "mover" } as never, SHARDS);
    const owner = (await fm.cluster()).owners[shard]!.node!;
    const target = ["node-a", "node-b", "node-c"].find((n) => n !== owner)!;
    let sent = 1;
    let stop = false;
    const pump = (async () => {
      while (!stop) {
        await fm.send(actor, { type: "INC" }, { msgId: `mover-${sent}` });
        sent++;
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await new Promise((r) => setTimeout(r, 150));
    const moved = await fm.move(actor, target);
    expect(moved).toMatchObject({ shard, from: owner, to: target, actor });
    await new Promise((r) => setTimeout(r, 150));
    const back = await fm.move(String(shard), owner);
    expect(back.to).toBe(owner);
    stop = true;
    await pump;
    await waitFor(async () => (await fm.get(actor)).step === sent, { what: `all ${sent} events applied` });
    const v = await fm.get(actor);
    expect(v.context).toMatchObject({ n: sent });
    const h = await fm.history(actor, { limit: 1000 });
    expect(h.steps.map((s) => s.step)).toEqual(Array.from({ length: sent }, (_, i) => i + 1));
    const epochs = h.steps.map((s) => s.epoch);
    expect(epochs).toEqual([...epochs].sort((a, b) => a - b));
    expect(new Set(h.steps.map((s) => s.node)).size).toBeGreaterThanOrEqual(2);
  });

  it("drains a node: its shards move to the others", async () => {
    const r = await fm.drain("node-c");
    expect(r.draining).toBe(true);
    await waitFor(async () => (await fm.cluster()).owners.every((o) => o.node !== "node-c"), { what: "node-c drained" });
    expect(nodes.get("node-c")!.ownedShards()).toEqual([]);
    await fm.drain("node-c", { undo: true });
    await settled(["node-a", "node-b", "node-c"]);
  });

  it("hands every shard over at once when a node shuts down", async () => {
    await nodes.get("node-c")!.close();
    nodes.delete("node-c");
    await settled(["node-a", "node-b"]);
    const v = await fm.cluster();
    expect(v.owners.filter((o) => o.reason === "release")).toEqual([]);
  });

  it("rebalances shards to a node that joins, without losing an actor", async () => {
    await fm.ask("counter/join", { type: "INC" });
    const d = await start("node-d");
    await settled(["node-a", "node-b", "node-d"]);
    expect(d.ownedShards().length).toBeGreaterThan(0);
    const r = await fm.ask("counter/join", { type: "INC" });
    expect(r).toMatchObject({ step: 2, context: { n: 2 } });
  });
});

describe("flowmetal move from the client's side", () => {
  // A scripted responder on its own subject prefix plays the nodes: NATS picks one member of the API queue
  // group per request, so with real nodes the test could not choose which request goes unanswered.
  async function responder(prefix: string, answer: (n: number) => object | undefined) {
    const nc = await connect({ servers: nats.url });
    const seen: unknown[] = [];
    nc.subscribe(`${prefix}.api.move`, {
      callback: (_err, m) => {
        seen.push(m.json());
        const reply = answer(seen.length);
        if (reply) m.respond(JSON.stringify(reply));
      },
    });
    await nc.flush();
    return { nc, seen };
  }

  it("asks again when the node serving the move dies without answering, and returns the move's result", async () => {
    const result = { shard: 3, from: "node-a", to: "node-b", epoch: 7, ms: 4, actors: 2 };
    const { nc, seen } = await responder("mva", (n) => (n === 1 ? undefined : { ok: true, result }));
    await using mv = await createClient({ servers: nats.url, prefix: "mva" });
    const r = await mv.move("3", "node-b", 4_000);
    expect(r).toMatchObject({ shard: 3, from: "node-a", to: "node-b", epoch: 7, actors: 2 });
    expect(r.ms).toBeGreaterThanOrEqual(1_000); // counted from the first round, which got no reply
    // Rounds of a quarter of the timeout, the same move each time.
    expect(seen).toEqual([1, 2].map(() => ({ target: "3", node: "node-b", timeoutMs: 1_000 })));
    await nc.close();
  });

  it("does not ask again when a node refuses the move, and gives up at its timeout", async () => {
    const refusal = { ok: false, error: { code: "FM_ERR_BAD_REQUEST", message: "no live node named node-x", retryable: false } };
    const refused = await responder("mvb", () => refusal);
    await using mvb = await createClient({ servers: nats.url, prefix: "mvb" });
    await expect(mvb.move("3", "node-x", 4_000)).rejects.toMatchObject({ code: "FM_ERR_BAD_REQUEST", message: expect.stringContaining("node-x") });
    expect(refused.seen).toHaveLength(1);
    await refused.nc.close();

    const silent = await responder("mvc", () => undefined);
    await using mvc = await createClient({ servers: nats.url, prefix: "mvc" });
    const t0 = Date.now();
    await expect(mvc.move("3", "node-b", 2_000)).rejects.toMatchObject({ code: "FM_ERR_TIMEOUT" });
    expect(Date.now() - t0).toBeLessThan(6_000);
    expect(silent.seen.length).toBeGreaterThanOrEqual(2);
    await silent.nc.close();
  });
});

describe("joining the cluster", () => {
  it("refuses to start, saying why, when the node cannot read the cluster's records (never runs without joining)", async () => {
    // The node's user may do everything but read the heartbeats bucket (its reads make consumers on its stream).
    const config = `authorization {
      users = [
        { user: admin, password: admin }
        { user: node, password: node, permissions: { publish: { deny: ["$JS.API.CONSUMER.CREATE.KV_fm_nodes", "$JS.API.CONSUMER.CREATE.KV_fm_nodes.>"] } } }
      ]
    }`;
    await using server = await startNatsServer({ config });
    const err = await createClusterNode({ servers: `nats://node:node@127.0.0.1:${server.port}`, name: "node-x", modules: [counter], shards: 4, joinTimeoutMs: 1_000 }).then(
      (n) => n.drain().then(() => new Error("started without joining")),
      (e: unknown) => e,
    );
    expect(FlowmetalError.is(err, ErrorCode.Unavailable), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/^node node-x could not join the cluster: .+/);
    console.log(`[join] refused with: ${(err as Error).message}`);
    // Nothing half-joined: no heartbeat in the bucket, no shard claimed.
    const nc = await connect({ servers: server.url, user: "admin", pass: "admin" });
    const kvm = new Kvm(nc);
    expect(await (await kvm.open("fm_nodes")).get("node-x")).toBeNull();
    const shards = await kvm.open("fm_shards");
    for (let s = 0; s < 4; s++) expect(await shards.get(`s.${s}`)).toBeNull();
    await nc.close();
  });

  /**
   * A real connection whose JetStream requests to create consumers on the heartbeats bucket (what reading and
   * watching it do) time out while `failing()` says so: the fault a node meets when it joins while JetStream is
   * busy or electing a leader.
   */
  function timingOut(nc: NatsConnection, failing: () => boolean): { nc: NatsConnection; failed: () => number } {
    let failed = 0;
    const faulty = withFaults(nc, {
      request(subject) {
        if (!subject.startsWith("$JS.API.CONSUMER.CREATE.KV_fm_nodes") || !failing()) return undefined;
        failed++;
        return new Error("timeout");
      },
    });
    return { nc: faulty, failed: () => failed };
  }

  it("joins once transient failures reading the cluster's records stop, and gives up naming the cause when they do not", async () => {
    await using server = await startNatsServer();
    const nc = await connect({ servers: server.url });
    // Fails for the first second, then works: the node joins, its heartbeat in the bucket.
    const t0 = Date.now();
    const flaky = timingOut(nc, () => Date.now() - t0 < 1_000);
    const a = await createClusterPlacement({ nc: flaky.nc, shards: 4, heartbeatTtlMs: 3_000, joinTimeoutMs: 20_000 });
    const events = a.watch("node-j", 4)[Symbol.asyncIterator]();
    const first = events.next();
    await a.joined;
    expect(flaky.failed()).toBeGreaterThan(1);
    expect(await first).toMatchObject({ done: false, value: { owned: true } });
    const view = await clusterView(a.buckets);
    expect(view.nodes.map((n) => n.name)).toEqual(["node-j"]);
    expect(view.owners.every((o) => o.node === "node-j")).toBe(true);
    await a.close!();

    // Never works: `joined` rejects (before the next retry would pass joinTimeoutMs), naming the node and the
    // cause; nothing is claimed.
    const down = timingOut(nc, () => true);
    const b = await createClusterPlacement({ nc: down.nc, shards: 4, heartbeatTtlMs: 3_000, joinTimeoutMs: 1_500 });
    const watching = b.watch("node-k", 4)[Symbol.asyncIterator]().next().then(() => "yielded", (e: Error) => e.message);
    await expect(b.joined).rejects.toMatchObject({ code: "FM_ERR_UNAVAILABLE", message: "node node-k could not join the cluster: timeout" });
    expect(down.failed()).toBeGreaterThan(1); // retried before giving up
    expect(await watching).toBe("node node-k could not join the cluster: timeout");
    const after = await clusterView(a.buckets);
    expect(after.nodes.map((n) => n.name)).not.toContain("node-k");
    expect(after.owners.filter((o) => o.node === "node-k")).toEqual([]);
    await b.close!();
    await nc.close();
  });
});
