import { jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AckedPublisher } from "../../node/publisher.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";

let nats: NatsServer;
let nc: NatsConnection;
let pub: AckedPublisher;

beforeAll(async () => {
  nats = await startNatsServer();
  nc = await connect({ servers: nats.url });
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "PUBTEST", subjects: ["pubtest.>"] });
  pub = new AckedPublisher(nc);
});
afterAll(async () => {
  pub?.close();
  await nc?.close();
  await nats?.[Symbol.asyncDispose]();
});

describe("acked publisher", () => {
  it("resolves with the stream's PubAck, in order, many in flight", async () => {
    const acks = await Promise.all(Array.from({ length: 200 }, (_, i) => pub.publish(`pubtest.a.${i % 7}`, new TextEncoder().encode(String(i)))));
    expect(acks.map((a) => a.seq)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(acks.every((a) => a.stream === "PUBTEST" && !a.duplicate)).toBe(true);
  });

  it("reports a duplicate Nats-Msg-Id as the first publish's sequence", async () => {
    const a = await pub.publish("pubtest.d", new Uint8Array([1]), { msgID: "same" });
    const b = await pub.publish("pubtest.d", new Uint8Array([2]), { msgID: "same" });
    expect(b).toEqual({ stream: "PUBTEST", seq: a.seq, duplicate: true });
  });

  it("rejects an append whose expected last subject sequence is stale, with JetStream's message", async () => {
    const first = await pub.publish("pubtest.e", new Uint8Array([1]), { expect: { lastSubjectSequence: 0 } });
    await pub.publish("pubtest.e", new Uint8Array([2]), { expect: { lastSubjectSequence: first.seq } });
    await expect(pub.publish("pubtest.e", new Uint8Array([3]), { expect: { lastSubjectSequence: first.seq } })).rejects.toThrow(/wrong last sequence/);
  });

  it("says 'no responders' when nothing stores the subject, and times out when nothing answers", async () => {
    await expect(pub.publish("nostream.x", new Uint8Array([1]))).rejects.toThrow(/no responders/);
    const silent = nc.subscribe("silent.x");
    await nc.flush();
    await expect(pub.publish("silent.x", new Uint8Array([1]), { timeout: 300 })).rejects.toThrow(/timeout/);
    silent.unsubscribe();
  });

  it("fails what is waiting when closed, and refuses new publishes", async () => {
    const p2 = new AckedPublisher(nc);
    const silent = nc.subscribe("silent.y");
    await nc.flush();
    const waiting = p2.publish("silent.y", new Uint8Array([1]));
    p2.close();
    await expect(waiting).rejects.toThrow(/closed/);
    await expect(p2.publish("pubtest.z", new Uint8Array([1]))).rejects.toThrow(/closed/);
    silent.unsubscribe();
  });
});
