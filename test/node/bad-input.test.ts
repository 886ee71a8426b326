import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { encode as cborEncode } from "cbor-x";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { ErrorCode } from "../../protocol/errors.js";
import * as programs from "../fixtures/programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";

let nats: NatsServer;
let node: FlowmetalNode;
let fm: Client;
let nc: NatsConnection;
let jsm: JetStreamManager;

beforeAll(async () => {
  nats = await startNatsServer();
  node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 2, limits: { maxBytes: 4096, maxDepth: 8 } });
  fm = await createClient({ servers: nats.url });
  nc = await connect({ servers: nats.url });
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await fm?.close();
  await node?.close();
  await nats?.[Symbol.asyncDispose]();
});

async function rawPublish(subject: string, data: Uint8Array | string, contentType?: string) {
  const h = headers();
  if (contentType) h.set("Content-Type", contentType);
  return jetstream(nc).publish(subject, data, { headers: h });
}

async function deadLetter(inboxSeq: number) {
  let found: { code: string | undefined; error: string | undefined; subject: string; data: Uint8Array } | undefined;
  await waitFor(async () => {
    const info = await jsm.streams.info("FM_DEAD").catch(() => undefined);
    if (!info || info.state.messages === 0) return false;
    for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
      const m = await jsm.streams.getMessage("FM_DEAD", { seq }).catch(() => null);
      if (m && m.header.get("Fm-Inbox-Seq") === String(inboxSeq)) {
        found = { code: m.header.get("Fm-Error-Code"), error: m.header.get("Fm-Error"), subject: m.subject, data: m.data };
        return true;
      }
    }
    return false;
  }, { what: `dead letter for inbox seq ${inboxSeq}` });
  return found!;
}

describe("inputs that cannot become a step", () => {
  it("dead-letters malformed JSON with the reason and keeps the actor going", async () => {
    await fm.ask("counter/raw", { type: "INC" });
    const ack = await rawPublish("fm.in.counter.raw", "{not json");
    const dead = await deadLetter(ack.seq);
    expect(dead.code).toBe(ErrorCode.MalformedPayload);
    expect(new TextDecoder().decode(dead.data)).toBe("{not json");
    const r = await fm.ask("counter/raw", { type: "INC" });
    expect(r).toMatchObject({ step: 2, context: { n: 2 } });
  });

  it("dead-letters an unknown program, a bad key token and an event without a type", async () => {
    const a = await rawPublish("fm.in.nosuch.k1", '{"type":"X"}');
    expect((await deadLetter(a.seq)).error).toContain("unknown program 'nosuch'");
    const b = await rawPublish("fm.in.counter.bad$key", '{"type":"INC"}');
    expect((await deadLetter(b.seq)).code).toBe(ErrorCode.InvalidToken);
    const c = await rawPublish("fm.in.counter.raw2", '{"kind":"INC"}');
    expect((await deadLetter(c.seq)).code).toBe(ErrorCode.InvalidEvent);
    const d = await rawPublish("fm.in.counter.raw2", '{"type":"xstate.done.actor.x"}');
    expect((await deadLetter(d.seq)).code).toBe(ErrorCode.InvalidEvent);
  });

  it("dead-letters payloads over the size or depth limit before parsing them", async () => {
    const big = await rawPublish("fm.in.counter.raw3", JSON.stringify({ type: "INC", pad: "x".repeat(5000) }));
    const deadBig = await deadLetter(big.seq);
    expect(deadBig.code).toBe(ErrorCode.PayloadTooLarge);
    expect(deadBig.error).toContain("4096");
    const deep = await rawPublish("fm.in.counter.raw3", `{"type":"INC","x":${"[".repeat(20)}${"]".repeat(20)}}`);
    expect((await deadLetter(deep.seq)).code).toBe(ErrorCode.PayloadTooDeep);
    const cborDeep = await rawPublish("fm.in.counter.raw3", cborEncode({ type: "INC", x: [[[[[[[[[[1]]]]]]]]]] }), "application/cbor");
    expect((await deadLetter(cborDeep.seq)).code).toBe(ErrorCode.PayloadTooDeep);
    const badCbor = await rawPublish("fm.in.counter.raw3", new Uint8Array([0xbf, 0x61, 0x61]), "application/cbor");
    expect((await deadLetter(badCbor.seq)).code).toBe(ErrorCode.MalformedPayload);
    const badType = await rawPublish("fm.in.counter.raw3", '{"type":"INC"}', "text/plain");
    expect((await deadLetter(badType.seq)).code).toBe(ErrorCode.MalformedPayload);
  });

  it("takes a CBOR event like a JSON one", async () => {
    await rawPublish("fm.in.counter.cbor", cborEncode({ type: "INC" }), "application/cbor");
    await rawPublish("fm.in.counter.cbor", JSON.stringify({ type: "INC" }), "application/json");
    await waitFor(async () => (await fm.get("counter/cbor").catch(() => undefined))?.step === 2);
    expect((await fm.get("counter/cbor")).context).toMatchObject({ n: 2 });
  });

  it("refuses a function call whose replyTo is not its actor's inbox: the function does not run, nothing lands there", async () => {
    const h = headers();
    h.set("Fm-Call", "evil.1");
    h.set("Content-Type", "application/json");
    const call = { callId: "evil.1", fn: "test.flaky", input: { failTimes: 0, key: "evil" }, actor: "worker/w-evil", replyTo: "fm.in.counter.victim", retry: { maxAttempts: 1, initialBackoffMs: 10, multiplier: 2, maxBackoffMs: 10 }, timeoutMs: 1000 };
    await jetstream(nc).publish("fm.fx.call.test.flaky", JSON.stringify(call), { headers: h, msgID: "evil.1" });
    await waitFor(async () => {
      const ci = await jsm.consumers.info("FM_FX", "fn-test_flaky");
      return ci.delivered.stream_seq > 0 && ci.num_pending === 0 && ci.num_ack_pending === 0;
    }, { what: "the call taken and terminated" });
    expect(programs.attempts.get("evil")).toBeUndefined();
    await expect(fm.get("counter/victim")).rejects.toMatchObject({ code: ErrorCode.UnknownActor });
  });

  it("leaves no input behind: every message was acked, none is redelivered in a loop", async () => {
    await waitFor(async () => (await jsm.streams.info("FM_IN")).state.messages === 0, { what: "inbox drained" });
    const c = await jsm.consumers.info("FM_IN", "shard-0-e1");
    expect(c.num_redelivered).toBe(0);
  });
});
