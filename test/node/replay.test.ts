import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { assign, emit, setup } from "xstate";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient } from "../../node/client/index.js";
import { readAll } from "../../node/journal.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { defineProgram, stepTime } from "../../node/program.js";
import { checkReplay } from "../../node/replay.js";
import type { StepRecord } from "../../protocol/records.js";
import { createSubjects, parseActorAddress } from "../../protocol/subjects.js";
import { counter } from "../fixtures/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";

let nats: NatsServer;
let node: FlowmetalNode;
let calls = 0;

/** Not deterministic: its assign reads a counter outside the machine. */
const drifting = defineProgram({
  name: "drifting",
  version: "1",
  machine: setup({}).createMachine({ context: { v: 0 }, on: { TICK: { actions: assign({ v: () => ++calls }) } } }),
});

beforeAll(async () => {
  nats = await startNatsServer();
  node = await createNode({ servers: nats.url, modules: [counter, drifting], shards: 1 });
  await using fm = await createClient({ servers: nats.url });
  for (let i = 0; i < 5; i++) await fm.ask("counter/r", { type: i === 2 ? "BOOM" : "INC" }).catch(() => undefined);
  for (let i = 0; i < 3; i++) await fm.ask("drifting/d", { type: "TICK" });
});
afterAll(async () => {
  await node?.close();
  await nats?.[Symbol.asyncDispose]();
});

async function journal(actor: string): Promise<StepRecord[]> {
  const nc = await connect({ servers: nats.url });
  try {
    const out: StepRecord[] = [];
    for await (const r of readAll(await jetstreamManager(nc), createSubjects(), parseActorAddress(actor))) out.push(r.record);
    return out;
  } finally {
    await nc.close();
  }
}

describe("replay check", () => {
  it("reproduces every recorded snapshot when the program is deterministic", async () => {
    const records = await journal("counter/r");
    expect(records).toHaveLength(5);
    expect(checkReplay(counter, records)).toEqual({ actor: "counter/r", steps: 5 });
  });

  it("reports the first step that differs when the program changed incompatibly", async () => {
    const changed = defineProgram({
      name: "counter",
      version: "2",
      machine: setup({}).createMachine({
        id: "counter",
        context: { n: 0, at: 0 },
        initial: "on",
        states: { on: { on: { INC: { actions: [assign({ n: ({ context }) => (context.n >= 1 ? context.n + 2 : context.n + 1), at: ({ event }) => stepTime(event) }), emit(({ context }) => ({ type: "counted", n: context.n }))] }, BOOM: { actions: assign({ n: () => { throw new Error("kaboom"); } }) } } } },
      }),
    });
    const report = checkReplay(changed, await journal("counter/r"));
    expect(report.divergence).toMatchObject({ step: 2, field: "snapshot" });
  });

  it("catches a program that is not deterministic", async () => {
    const report = checkReplay(drifting, await journal("drifting/d"));
    expect(report.divergence).toMatchObject({ step: 1, field: "snapshot" });
  });
});
