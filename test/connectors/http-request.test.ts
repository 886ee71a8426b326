import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { AckPolicy, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHttpRequestConnector, parseRetryAfter, type HttpRequestConnector, type HttpRequestInput, type HttpResponse } from "../../connectors/http-request/index.js";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { ErrorCode } from "../../protocol/errors.js";
import { createSubjects } from "../../protocol/subjects.js";
import { workerConsumerName } from "../../protocol/worker.js";
import * as programs from "../fixtures/http-programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";

interface Seen {
  path: string;
  method: string;
  headers: IncomingHttpHeaders;
  body: string;
  at: number;
}

/** How a route answers its n-th request (n counts from 1). */
type Route = (req: IncomingMessage, res: ServerResponse, n: number) => void;

interface Target extends AsyncDisposable {
  readonly origin: string;
  readonly seen: Seen[];
  on(path: string, route: Route): void;
  hits(path: string): Seen[];
}

/** A real HTTP server on 127.0.0.1 that records every request it gets. */
async function startTarget(): Promise<Target> {
  const seen: Seen[] = [];
  const routes = new Map<string, Route>();
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = new URL(req.url ?? "/", "http://x").pathname;
      seen.push({ path, method: req.method ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8"), at: Date.now() });
      const route = routes.get(path);
      if (!route) return void res.writeHead(404, { "content-type": "text/plain" }).end(`no route ${path}`);
      route(req, res, seen.filter((s) => s.path === path).length);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    seen,
    on: (path, route) => void routes.set(path, route),
    hits: (path) => seen.filter((s) => s.path === path),
    [Symbol.asyncDispose]: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers }).end(JSON.stringify(body));
}

interface FetcherView {
  value: unknown;
  context: { response: HttpResponse | null; error: { code: string; message: string; retryable: boolean; details?: Record<string, unknown> } | null };
  callId: string;
}

async function fetchVia(fm: Client, key: string, request: HttpRequestInput, timeoutMs = 15_000): Promise<FetcherView> {
  const actor = `fetcher/${key}`;
  await fm.ask(actor, { type: "FETCH", request });
  await waitFor(async () => ["done", "failed"].includes(String((await fm.get(actor)).value)), { timeoutMs, what: `${actor} done or failed` });
  const view = await fm.get(actor);
  const h = await fm.history(actor);
  const callId = h.steps[0]?.effects[0]?.id ?? "";
  return { value: view.value, context: view.context as FetcherView["context"], callId };
}

describe("http.request connector", () => {
  let nats: NatsServer;
  let node: FlowmetalNode;
  let fm: Client;
  let http: HttpRequestConnector;
  let target: Target;

  beforeAll(async () => {
    nats = await startNatsServer();
    node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 2 });
    fm = await createClient({ servers: nats.url });
    target = await startTarget();
    http = await createHttpRequestConnector({ servers: nats.url, allow: ["127.0.0.1"] });
  });
  afterAll(async () => {
    await http?.close();
    await target?.[Symbol.asyncDispose]();
    await fm?.close();
    await node?.close();
    await nats?.[Symbol.asyncDispose]();
  });

  it("returns a JSON body parsed, with status and headers, and sends the call id as Idempotency-Key", async () => {
    target.on("/echo", (req, res) => {
      const s = target.hits("/echo").at(-1);
      json(res, 201, { method: req.method, contentType: req.headers["content-type"], got: JSON.parse(s?.body ?? "null") as unknown }, { "x-extra": "yes" });
    });
    const v = await fetchVia(fm, "json", { url: `${target.origin}/echo`, method: "post", body: { a: 1, list: [1, 2] }, headers: { "X-Trace": "t-1" } });
    expect(v.value).toBe("done");
    expect(v.context.response).toMatchObject({
      status: 201,
      headers: { "content-type": "application/json", "x-extra": "yes" },
      body: { method: "POST", contentType: "application/json", got: { a: 1, list: [1, 2] } },
    });
    const [hit] = target.hits("/echo");
    expect(hit?.headers["idempotency-key"]).toBe(v.callId);
    expect(hit?.headers["x-trace"]).toBe("t-1");
    expect(v.callId).toMatch(/^fetcher\.json\./);
  });

  it("returns a text body as a string when the response is not JSON", async () => {
    target.on("/text", (_req, res) => void res.writeHead(200, { "content-type": "text/plain; charset=utf-8" }).end("héllo, world"));
    const v = await fetchVia(fm, "text", { url: `${target.origin}/text` });
    expect(v.context.response).toMatchObject({ status: 200, body: "héllo, world" });
  });

  it("follows a redirect to another allowed URL, re-vetting the hop", async () => {
    target.on("/moved", (_req, res) => void res.writeHead(302, { location: "/text" }).end());
    const v = await fetchVia(fm, "redirect", { url: `${target.origin}/moved` });
    expect(v.context.response).toMatchObject({ status: 200, body: "héllo, world" });
    expect(target.hits("/moved")).toHaveLength(1);
  });

  it("retries a 503 no sooner than its Retry-After, with the same Idempotency-Key", async () => {
    target.on("/busy", (_req, res, n) => {
      if (n === 1) return void json(res, 503, { error: "busy" }, { "retry-after": "1" });
      json(res, 200, { ok: true, n });
    });
    const v = await fetchVia(fm, "busy", { url: `${target.origin}/busy` });
    expect(v.context.response).toMatchObject({ status: 200, body: { ok: true, n: 2 } });
    const hits = target.hits("/busy");
    expect(hits).toHaveLength(2);
    expect(hits[1]!.at - hits[0]!.at).toBeGreaterThanOrEqual(950);
    expect(new Set(hits.map((h) => h.headers["idempotency-key"]))).toEqual(new Set([v.callId]));
  });

  it("retries after a dropped connection with backoff, with the same Idempotency-Key", async () => {
    target.on("/drop", (req, res, n) => {
      if (n === 1) return void req.socket.destroy();
      json(res, 200, { ok: true, n });
    });
    const v = await fetchVia(fm, "drop", { url: `${target.origin}/drop` });
    expect(v.context.response).toMatchObject({ status: 200, body: { ok: true, n: 2 } });
    const hits = target.hits("/drop");
    expect(hits).toHaveLength(2);
    // initialBackoffMs 50 with ±20 % jitter.
    expect(hits[1]!.at - hits[0]!.at).toBeGreaterThanOrEqual(35);
    expect(hits.map((h) => h.headers["idempotency-key"])).toEqual([v.callId, v.callId]);
  });

  it("gives up after the call's attempts on repeated 5xx, with the last status in details", async () => {
    target.on("/down", (_req, res) => json(res, 500, { error: "down" }));
    const v = await fetchVia(fm, "down", { url: `${target.origin}/down` });
    expect(v.value).toBe("failed");
    expect(v.context.error).toMatchObject({ code: ErrorCode.FunctionFailed, retryable: false, details: { status: 500, body: { error: "down" } } });
    expect(v.context.error?.message).toMatch(/attempt 3 of 3/);
    expect(target.hits("/down")).toHaveLength(3);
  });

  it("ends with xstate.error.actor and the response in details on a 404, without retrying", async () => {
    target.on("/gone", (_req, res) => json(res, 404, { error: "no such order" }, { "x-request-id": "r-9" }));
    const v = await fetchVia(fm, "notfound", { url: `${target.origin}/gone` });
    expect(v.value).toBe("failed");
    expect(v.context.error).toMatchObject({
      code: ErrorCode.FunctionFailed,
      retryable: false,
      details: { status: 404, headers: { "x-request-id": "r-9" }, body: { error: "no such order" } },
    });
    expect(target.hits("/gone")).toHaveLength(1);
  });

  it("keeps the wait for a response durable across a node restart", async () => {
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    target.on("/slow-order", (_req, res) => void held.then(() => json(res, 200, { order: "o-1" })));
    await fm.ask("fetcher/durable", { type: "FETCH", request: { url: `${target.origin}/slow-order`, timeoutMs: 20_000 } });
    await waitFor(() => target.hits("/slow-order").length === 1, { what: "the request to reach the server" });
    await node.close();
    release(); // the response arrives while no node runs: the connector puts the result into the inbox
    node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 2 });
    await waitFor(async () => (await fm.get("fetcher/durable")).value === "done", { timeoutMs: 15_000, what: "the result step after restart" });
    expect(((await fm.get("fetcher/durable")).context as FetcherView["context"]).response).toMatchObject({ status: 200, body: { order: "o-1" } });
    expect(target.hits("/slow-order")).toHaveLength(1);
  });

  it("retries a 429 and a 408 like 5xx", async () => {
    target.on("/limited", (_req, res, n) => (n === 1 ? json(res, 429, {}, { "retry-after": "0" }) : n === 2 ? json(res, 408, {}) : json(res, 200, { n })));
    const v = await fetchVia(fm, "limited", { url: `${target.origin}/limited` });
    expect(v.context.response).toMatchObject({ status: 200, body: { n: 3 } });
  });

  it("times an attempt out after input.timeoutMs and retries it, then fails with FM_ERR_FUNCTION_TIMEOUT", async () => {
    target.on("/hang", () => undefined);
    const started = Date.now();
    const v = await fetchVia(fm, "hang", { url: `${target.origin}/hang`, timeoutMs: 300 });
    expect(v.value).toBe("failed");
    expect(v.context.error).toMatchObject({ code: ErrorCode.FunctionTimeout, retryable: false });
    expect(v.context.error?.message).toMatch(/took longer than 300 ms/);
    const hits = target.hits("/hang");
    expect(hits).toHaveLength(3);
    expect(new Set(hits.map((h) => h.headers["idempotency-key"]))).toEqual(new Set([v.callId]));
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
  });

  it("stops reading a response past maxResponseBytes and fails terminally with FM_ERR_PAYLOAD_TOO_LARGE", async () => {
    target.on("/stream", (_req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      const chunk = "x".repeat(64 * 1024);
      for (let i = 0; i < 32; i++) res.write(chunk);
      res.end();
    });
    const v = await fetchVia(fm, "big", { url: `${target.origin}/stream`, maxResponseBytes: 100_000 });
    expect(v.value).toBe("failed");
    expect(v.context.error).toMatchObject({ code: ErrorCode.PayloadTooLarge, retryable: false, details: { status: 200, limit: 100_000 } });
    expect(target.hits("/stream")).toHaveLength(1);
  });

  it("refuses a body whose content-length is above the default 1 MiB cap without reading it", async () => {
    target.on("/huge", (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": String(2 * 1024 * 1024) });
      res.write("y".repeat(1024));
      // Never finishes: the connector must not wait for the rest.
    });
    const v = await fetchVia(fm, "huge", { url: `${target.origin}/huge` });
    expect(v.context.error).toMatchObject({ code: ErrorCode.PayloadTooLarge, retryable: false });
    expect(v.context.error?.message).toMatch(/content-length says 2097152/);
  });

  it("rejects bad input terminally with FM_ERR_BAD_REQUEST", async () => {
    const v = await fetchVia(fm, "badinput", { url: `${target.origin}/text`, method: "GET", body: "nope" });
    expect(v.context.error).toMatchObject({ code: ErrorCode.BadRequest, retryable: false });
    expect(v.context.error?.message).toMatch(/GET request cannot have a body/);
    const v2 = await fetchVia(fm, "badheader", { url: `${target.origin}/text`, headers: { "Transfer-Encoding": "chunked" } });
    expect(v2.context.error).toMatchObject({ code: ErrorCode.BadRequest });
  });
});

describe("parseRetryAfter", () => {
  it("reads delay-seconds and HTTP-dates", () => {
    const now = Date.parse("2030-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter(" 0 ", now)).toBe(0);
    expect(parseRetryAfter("Tue, 01 Jan 2030 00:00:05 GMT", now)).toBe(5_000);
    expect(parseRetryAfter("Mon, 31 Dec 2029 23:00:00 GMT", now)).toBe(0);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});

describe("http.request connector killed mid-call", () => {
  const script = fileURLToPath(new URL("./http-connector-process.mjs", import.meta.url));
  const built = fileURLToPath(new URL("../../dist/connectors/http-request/index.js", import.meta.url));

  it("redelivers the call with the same Idempotency-Key and the actor applies one result", async () => {
    expect(existsSync(built), "run `npm run build` first: the child process runs the connector from dist").toBe(true);
    await using nats = await startNatsServer();
    const node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 1 });
    const fm = await createClient({ servers: nats.url });
    await using target = await startTarget();
    let held: () => void = () => undefined;
    const heldOnce = new Promise<void>((r) => (held = r));
    target.on("/slow", (_req, res, n) => {
      // The first attempt is held until its connector dies; the redelivered one is answered.
      if (n === 1) return held();
      json(res, 200, { ok: true, n });
    });

    // A short ack_wait (as in T15), so the call of the killed connector comes back in seconds, not in timeoutMs + 30 s.
    const subjects = createSubjects();
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.consumers.add(subjects.streams.calls, {
      durable_name: workerConsumerName("http.request"),
      ack_policy: AckPolicy.Explicit,
      filter_subject: subjects.call("http.request"),
      ack_wait: 3_000 * 1_000_000,
      max_deliver: -1,
      max_ack_pending: 10_000,
    });

    const child = spawn(process.execPath, [script, nats.url, JSON.stringify(["127.0.0.1"])], { stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<void>((r) => child.once("exit", () => r()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
      child.once("exit", (code) => reject(new Error(`connector process exited (${code}): ${stderr}`)));
    });
    let second: HttpRequestConnector | undefined;
    try {
      await fm.ask("fetcher/crash", { type: "FETCH", request: { url: `${target.origin}/slow` } });
      await heldOnce;
      child.kill("SIGKILL");
      await exited;
      expect(target.hits("/slow")).toHaveLength(1);

      second = await createHttpRequestConnector({ nc, allow: ["127.0.0.1"] });
      await waitFor(async () => (await fm.get("fetcher/crash")).value === "done", { timeoutMs: 20_000, what: "the redelivered call to finish" });
      const view = await fm.get("fetcher/crash");
      const h = await fm.history("fetcher/crash");
      const callId = h.steps[0]?.effects[0]?.id;
      const hits = target.hits("/slow");
      expect(hits).toHaveLength(2);
      expect(hits.map((s) => s.headers["idempotency-key"])).toEqual([callId, callId]);
      expect(view.context).toMatchObject({ response: { status: 200, body: { ok: true, n: 2 } } });
      expect(h.steps.map((s) => s.kind)).toEqual(["event", "result"]);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await second?.close();
      await nc.close();
      await fm.close();
      await node.close();
    }
  });
});
