import { assign, setup } from "xstate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode, type Placement } from "../../node/node.js";
import { defineProgram } from "../../node/program.js";
import { createSubjects, shardOf } from "../../protocol/subjects.js";
import { counter } from "../fixtures/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { spoilPull, withFaults } from "../support/faulty-connection.js";
import { waitFor } from "../support/wait.js";

/** A history state: after leaving `work` and coming back, it must resume in the sub-state it left. */
const wizard = defineProgram({
  name: "wizard",
  version: "1",
  machine: setup({}).createMachine({
    id: "wizard",
    initial: "work",
    context: { visits: 0 },
    states: {
      work: {
        initial: "one",
        states: { one: { on: { NEXT: "two" } }, two: { on: { NEXT: "three" } }, three: {}, hist: { type: "history" } },
        on: { PAUSE: "paused" },
      },
      paused: { entry: assign({ visits: ({ context }) => context.visits + 1 }), on: { RESUME: "work.hist" } },
    },
  }),
});

let nats: NatsServer;
let fm: Client;

beforeAll(async () => {
  nats = await startNatsServer();
  fm = await createClient({ servers: nats.url });
});
afterAll(async () => {
  await fm?.close();
  await nats?.[Symbol.asyncDispose]();
});

describe("resume", () => {
  it("restores history states after the node restarts", async () => {
    {
      await using node = await createNode({ servers: nats.url, modules: [wizard], shards: 2 });
      await fm.ask("wizard/w", { type: "NEXT" });
      const r = await fm.ask("wizard/w", { type: "PAUSE" });
      expect(r.value).toBe("paused");
      expect(node.activeActors()).toBe(1);
    }
    await using _again = await createNode({ servers: nats.url, modules: [wizard], shards: 2 });
    const r = await fm.ask("wizard/w", { type: "RESUME" });
    expect(r.value).toEqual({ work: "two" });
  });

  it("passivates idle actors and resumes them from their last record", async () => {
    await using node = await createNode({ servers: nats.url, modules: [counter], shards: 2, passivateAfterMs: 100 });
    await Promise.all(Array.from({ length: 50 }, (_, i) => fm.ask(`counter/p${i}`, { type: "INC" })));
    expect(node.activeActors()).toBeGreaterThan(0);
    await waitFor(() => node.activeActors() === 0, { what: "actors passivated" });
    const r = await fm.ask("counter/p7", { type: "INC" });
    expect(r).toMatchObject({ step: 2, context: { n: 2 } });
    expect(node.activeActors()).toBe(1);
  });

  it("takes every input, in order per actor, when more arrive than maxInFlight lets it start at once", async () => {
    // With two slots per shard most deliveries wait for one: they must become steps in the order received.
    await using node = await createNode({ servers: nats.url, modules: [counter], shards: 2, maxInFlight: 2 });
    await using nc = await connect({ servers: nats.url });
    const js = jetstream(nc);
    const keys = Array.from({ length: 30 }, (_, i) => `mif${i}`);
    const body = new TextEncoder().encode(JSON.stringify({ type: "INC" }));
    await Promise.all(Array.from({ length: 4 }, () => keys).flat().map((k) => js.publish(`fm.in.counter.${k}`, body)));
    await waitFor(async () => (await Promise.all(keys.map((k) => fm.get(`counter/${k}`).catch(() => undefined)))).every((v) => v?.step === 4), { what: "4 steps for each of 30 actors", timeoutMs: 15_000 });
    for (const k of keys) {
      const page = await fm.history(`counter/${k}`);
      expect(page.steps.map((x) => x.context)).toEqual([1, 2, 3, 4].map((n) => expect.objectContaining({ n })));
      const seqs = page.steps.map((x) => x.seq);
      expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    }
    expect(node.activeActors()).toBe(30);
  });

  it("keeps an actor's inputs in order when a delivery goes missing on its way to the node", async () => {
    // The lost delivery is played by a second client that pulls one input from the node's own shard consumer
    // and never acks it (what a pull answered into a dropped connection looks like to the server). The inputs
    // after it must wait for it: had they become steps first, it would come back after ack_wait below the
    // actor's inbox sequence and be dropped as a redelivery — an acknowledged event lost (DESIGN.md I1).
    await using node = await createNode({ servers: nats.url, modules: [counter], shards: 2, ackWaitMs: 1500 });
    await fm.ask("counter/gap", { type: "INC" });
    await using nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const subjects = createSubjects("fm");
    const filter = subjects.inboxShard(shardOf({ program: "counter", key: "gap" } as never, 2));
    let name: string | undefined;
    for await (const ci of await jsm.consumers.list(subjects.streams.inbox)) if (ci.config.filter_subject === filter) name = ci.name;
    const thief = await jetstream(nc).consumers.get(subjects.streams.inbox, name!);
    const stolen = thief.next({ expires: 10_000 });
    await new Promise((r) => setTimeout(r, 200));
    for (let i = 0; i < 5; i++) await fm.send("counter/gap", { type: "INC" }, { msgId: `gap-${i}` });
    const m = await stolen;
    expect(m, "the second client took one input").not.toBeNull();
    await waitFor(async () => (await fm.get("counter/gap")).step === 6, { what: "all six inputs became steps", timeoutMs: 10_000 });
    // Past the ack wait: the stolen delivery coming back must not make a seventh step, nor be lost.
    await new Promise((r) => setTimeout(r, 2500));
    const view = await fm.get("counter/gap");
    expect(view).toMatchObject({ step: 6, context: { n: 6 } });
    const page = await fm.history("counter/gap");
    const seqs = page.steps.map((s) => s.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(seqs).toContain(m!.seq);
    expect(node.activeActors()).toBeGreaterThan(0);
  });

  it("recreates a shard consumer the client library gave up on (a pull answered 400) and takes the shard's inputs again", async () => {
    // The node's own connection, with one of its later pulls spoiled so that the server answers it with
    // 400 (a heartbeat longer than the pull's expiry): nats.js then stops that consumer for good.
    await using base = await connect({ servers: nats.url });
    let spoil = 0;
    const pulls: string[] = [];
    const nc = withFaults(base, {
      publish(subject, data) {
        if (spoil === 0 || !subject.startsWith("$JS.API.CONSUMER.MSG.NEXT.FM_IN.shard-")) return undefined;
        spoil--;
        pulls.push(subject);
        return spoilPull(data);
      },
    });
    await using node = await createNode({ nc, modules: [counter], shards: 2, maxInFlight: 2 });
    await fm.ask("counter/spoilt", { type: "INC" });
    const jsm = await jetstreamManager(base);
    const shard = shardOf({ program: "counter", key: "spoilt" } as never, 2);
    const consumer = `shard-${shard}-e1`;
    const before = (await jsm.consumers.info("FM_IN", consumer)).created;
    spoil = 1;
    for (let i = 0; i < 6; i++) await fm.send("counter/spoilt", { type: "INC" }, { msgId: `spoilt-${i}` });
    await waitFor(() => pulls.length === 1, { what: "a pull spoiled" });
    expect(pulls[0]).toContain(`.${consumer}`);
    await waitFor(async () => (await fm.get("counter/spoilt")).step === 7, { what: "every input a step after the consumer was recreated", timeoutMs: 10_000 });
    expect((await jsm.consumers.info("FM_IN", consumer)).created).not.toBe(before);
    expect(await fm.ask("counter/spoilt", { type: "INC" })).toMatchObject({ step: 8, context: { n: 8 } });
    const seqs = (await fm.history("counter/spoilt")).steps.map((st) => st.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(node.ownedShards()).toEqual([0, 1]);
  });

  it("a runner of an older epoch leaves the newer owner's consumer alone and stops (a stale node cannot unplug the owner)", async () => {
    const fixed = (epoch: number, fenced: number[]): Placement => ({
      async *watch(_node, shards) {
        for (let shard = 0; shard < shards; shard++) yield { shard, epoch, owned: true };
      },
      fenced: (shard) => void fenced.push(shard),
    });
    await using nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    const names = async () => {
      const out: string[] = [];
      for await (const ci of await jsm.consumers.list("FM_IN")) out.push(ci.name);
      return out.sort();
    };
    const fencedNew: number[] = [];
    await using owner = await createNode({ servers: nats.url, modules: [counter], shards: 2, placement: fixed(7, fencedNew) });
    await waitFor(async () => (await names()).join() === "shard-0-e7,shard-1-e7", { what: "the owner's consumers" });
    const fencedOld: number[] = [];
    await using _stale = await createNode({ servers: nats.url, modules: [counter], shards: 2, placement: fixed(6, fencedOld) });
    await waitFor(() => fencedOld.length === 2, { what: "the stale node's runners stopped" });
    expect(await names()).toEqual(["shard-0-e7", "shard-1-e7"]);
    expect(fencedNew).toEqual([]);
    const r = await fm.ask("counter/after-stale", { type: "INC" });
    expect(r).toMatchObject({ step: 1 });
    expect((await fm.history("counter/after-stale")).steps[0]).toMatchObject({ node: owner.name, epoch: 7 });
    // Leave the streams as the single-node placement (epoch 1) of other tests expects them.
    for (const n of await names()) await jsm.consumers.delete("FM_IN", n);
  });

  it("keeps the shard count of existing streams and refuses to change it", async () => {
    await expect(createNode({ servers: nats.url, modules: [counter], shards: 8 })).rejects.toMatchObject({ code: "FM_ERR_BAD_REQUEST" });
  });
});
