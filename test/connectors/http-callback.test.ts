import { createHmac } from "node:crypto";
import { spawn } from "node:child_process";
import { request } from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHttpCallbackConnector, type HttpCallbackConnector } from "../../connectors/http-callback/index.js";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { ErrorCode } from "../../protocol/errors.js";
import * as programs from "../fixtures/callback-programs.js";
import { freePort } from "../support/nats-cluster.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";

const secret = "test-secret-test-secret-test-secret-!";
const cli = fileURLToPath(new URL("../../dist/node/cli/main.js", import.meta.url));
const stripeSecret = "whsec_test";
let nats: NatsServer;
let node: FlowmetalNode;
let cb: HttpCallbackConnector;
let fm: Client;

interface Res {
  status: number;
  body: { error?: { code: string; message: string }; [k: string]: unknown };
  headers: Record<string, string | string[] | undefined>;
}

function post(url: string, body: string | Buffer, headers: Record<string, string> = {}, method = "POST"): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers: { "content-type": "application/json", ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const text = Buffer.concat(chunks).toString("utf8");
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Res["body"]) : {} });
      });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function callbackUrl(actor: string, expiresInMs?: number): Promise<string> {
  await fm.ask(actor, { type: "START", ...(expiresInMs ? { expiresInMs } : {}) });
  await waitFor(async () => (await fm.get(actor)).value === "waiting", { what: `${actor} has its callback URL` });
  return ((await fm.get(actor)).context as { url: string }).url;
}

async function steps(actor: string): Promise<number> {
  return (await fm.get(actor)).step;
}

function stripeHeader(body: string, t = Math.floor(Date.now() / 1000), key = stripeSecret): string {
  return `t=${t},v1=${createHmac("sha256", key).update(`${t}.${body}`).digest("hex")}`;
}

beforeAll(async () => {
  nats = await startNatsServer();
  node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 2 });
  cb = await createHttpCallbackConnector({
    servers: nats.url,
    secret,
    port: 0,
    providers: { stripey: { scheme: "stripe", secret: stripeSecret } },
    ingressToken: "ingress-token",
    publishTimeoutMs: 1500,
  });
  fm = await createClient({ servers: nats.url });
});
afterAll(async () => {
  await fm?.close();
  await cb?.close();
  await node?.close();
  await nats?.[Symbol.asyncDispose]();
});

describe("http callback connector", () => {
  it("persists a POST to a minted URL into the actor before answering 202", async () => {
    const url = await callbackUrl("checkout/ok");
    expect(url.startsWith(`${cb.url}/cb/`)).toBe(true);
    const r = await post(url, JSON.stringify({ amount: 42 }));
    expect(r.status).toBe(202);
    const v = await fm.get("checkout/ok");
    expect(v).toMatchObject({ value: "paid", context: { paid: { amount: 42 } } });
    const h = await fm.history("checkout/ok");
    expect(h.steps.at(-1)!.event).toMatchObject({ type: "PAID", body: { amount: 42 }, contentType: "application/json" });
  });

  it("stores a retried delivery once", async () => {
    const url = await callbackUrl("checkout/replay");
    const before = await steps("checkout/replay");
    const a = await post(url, '{"id":"evt_1"}');
    const b = await post(url, '{"id":"evt_1"}');
    expect([a.status, b.status]).toEqual([202, 202]);
    expect(b.body.duplicate).toBe(true);
    await waitFor(async () => (await steps("checkout/replay")) === before + 1);
    expect((await fm.history("checkout/replay")).steps.filter((s) => s.event.type === "PAID")).toHaveLength(1);
  });

  it("refuses a tampered token, an expired one, a wrong method and a bad content type, appending nothing", async () => {
    const url = await callbackUrl("checkout/bad");
    const before = await steps("checkout/bad");
    const tampered = url.slice(0, -3) + (url.endsWith("AAA") ? "BBB" : "AAA");
    const r1 = await post(tampered, "{}");
    expect(r1.status).toBe(404);
    expect(r1.body.error?.code).toBe(ErrorCode.Unauthorized);
    const r2 = await post(url, "", {}, "GET");
    expect(r2.status).toBe(405);
    expect(r2.headers.allow).toBe("POST");
    const r3 = await post(url, "hello", { "content-type": "text/plain" });
    expect(r3.status).toBe(415);
    expect(r3.body.error?.message).toContain("text/plain");
    const r4 = await post(url, "{nope", {});
    expect(r4.status).toBe(400);
    const expiring = await callbackUrl("checkout/expired", 1);
    await new Promise((r) => setTimeout(r, 20));
    const r5 = await post(expiring, "{}");
    expect(r5.status).toBe(410);
    expect(r5.body.error?.code).toBe(ErrorCode.Expired);
    expect(await steps("checkout/bad")).toBe(before);
    expect((await fm.get("checkout/expired")).value).toBe("waiting");
  });

  it("answers 413 for 2 MB and 30 MB bodies without reading them", async () => {
    const url = await callbackUrl("checkout/big");
    const r1 = await post(url, Buffer.alloc(2 * 1024 * 1024, 0x20));
    expect(r1.status).toBe(413);
    // 30 MB announced: refused from the headers alone, before the body is sent.
    const r2 = await new Promise<number>((resolve, reject) => {
      const req = request(url, { method: "POST", headers: { "content-type": "application/json", "content-length": String(30 * 1024 * 1024) } }, (res) => {
        resolve(res.statusCode ?? 0);
        res.resume();
        req.destroy();
      });
      req.on("error", (e) => (String(e).includes("socket hang up") || String(e).includes("EPIPE") ? undefined : reject(e)));
      req.write(Buffer.alloc(64 * 1024, 0x20));
    });
    expect(r2).toBe(413);
    expect((await fm.get("checkout/big")).value).toBe("waiting");
  });

  it("checks provider signatures: valid, wrong key, tampered body, stale timestamp", async () => {
    const url = await callbackUrl("stripey/s1");
    const body = '{"id":"evt_9","type":"charge.succeeded"}';
    expect((await post(url, body, { "stripe-signature": stripeHeader(body, undefined, "wrong") })).status).toBe(401);
    expect((await post(url, body.replace("9", "8"), { "stripe-signature": stripeHeader(body) })).status).toBe(401);
    const stale = await post(url, body, { "stripe-signature": stripeHeader(body, Math.floor(Date.now() / 1000) - 3600) });
    expect(stale.status).toBe(401);
    expect(stale.body.error?.code).toBe(ErrorCode.Expired);
    expect((await post(url, body)).status).toBe(401);
    expect((await fm.get("stripey/s1")).value).toBe("waiting");
    expect((await post(url, body, { "stripe-signature": stripeHeader(body) })).status).toBe(202);
    expect((await fm.get("stripey/s1")).context).toMatchObject({ paid: { id: "evt_9" } });
  });

  it("takes events over HTTP ingress behind a bearer token, once per Idempotency-Key", async () => {
    const url = `${cb.url}/ingress/checkout/ing`;
    expect((await post(url, '{"type":"START"}')).status).toBe(401);
    expect((await post(url, '{"type":"START"}', { authorization: "Bearer nope" })).status).toBe(401);
    expect((await post(`${cb.url}/ingress/checkout/bad%20key`, '{"type":"START"}', { authorization: "Bearer ingress-token" })).status).toBe(400);
    expect((await post(url, '{"kind":"START"}', { authorization: "Bearer ingress-token" })).body.error?.code).toBe(ErrorCode.InvalidEvent);
    const a = await post(url, '{"type":"START"}', { authorization: "Bearer ingress-token", "idempotency-key": "k1" });
    const b = await post(url, '{"type":"START"}', { authorization: "Bearer ingress-token", "idempotency-key": "k1" });
    expect([a.status, b.status, b.body.duplicate]).toEqual([202, 202, true]);
    await waitFor(async () => (await fm.get("checkout/ing").catch(() => undefined))?.value === "waiting");
    expect((await fm.get("checkout/ing")).step).toBe(2);
  });

  it("answers 503 while NATS cannot persist, and delivers the retry after recovery", async () => {
    const url = await callbackUrl("checkout/outage");
    await nats.kill();
    const r1 = await post(url, '{"n":1}');
    expect(r1.status).toBe(503);
    expect(r1.headers["retry-after"]).toBe("5");
    await nats.restart();
    await waitFor(async () => (await post(url, '{"n":1}')).status === 202, { timeoutMs: 20_000, what: "delivery after recovery" });
    await waitFor(async () => (await fm.get("checkout/outage").catch(() => undefined))?.value === "paid", { timeoutMs: 20_000 });
  });

  it("stores a delivery once when the connector dies between persist and reply", async () => {
    const url = await callbackUrl("checkout/crash");
    const before = await steps("checkout/crash");
    const port = await freePort();
    const child = spawn(process.execPath, [cli, "connector", "http-callback", "--nats", nats.url, "--port", String(port)], {
      env: { ...process.env, FLOWMETAL_CALLBACK_SECRET: secret, FLOWMETAL_FAILPOINTS: "after-persist=1", FLOWMETAL_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once("exit", (_c, sig) => r(sig)));
    await new Promise<void>((resolve) => child.stdout!.on("data", (d: Buffer) => d.toString().includes("ready") && resolve()));
    const path = new URL(url).pathname;
    const first = await post(`http://127.0.0.1:${port}${path}`, '{"attempt":"same"}').catch((e: Error) => e);
    expect(first).toBeInstanceOf(Error); // the connector died before answering
    expect(await exited).toBe("SIGKILL");
    const retry = await post(url, '{"attempt":"same"}');
    expect(retry).toMatchObject({ status: 202, body: { duplicate: true } });
    await waitFor(async () => (await fm.get("checkout/crash")).value === "paid");
    expect(await steps("checkout/crash")).toBe(before + 1);
  });

  it("keeps the wait durable across a node restart", async () => {
    const url = await callbackUrl("checkout/durable");
    await node.close();
    expect((await post(url, '{"late":true}')).status).toBe(202);
    node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 2 });
    await waitFor(async () => (await fm.get("checkout/durable")).value === "paid", { timeoutMs: 15_000 });
  });
});
