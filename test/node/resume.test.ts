import { assign, setup } from "xstate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode } from "../../node/node.js";
import { defineProgram } from "../../node/program.js";
import { counter } from "../fixtures/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
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

  it("keeps the shard count of existing streams and refuses to change it", async () => {
    await expect(createNode({ servers: nats.url, modules: [counter], shards: 8 })).rejects.toMatchObject({ code: "FM_ERR_BAD_REQUEST" });
  });
});
