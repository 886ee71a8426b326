import { lookup as dnsLookup } from "node:dns/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  classifyAddress,
  createHttpRequestConnector,
  describeVerdict,
  resolveSsrfPolicy,
  vetUrl,
  type HostLookup,
  type HttpRequestConnector,
  type HttpRequestInput,
} from "../../connectors/http-request/index.js";
import { createClient, type Client } from "../../node/client/index.js";
import { createNode, type FlowmetalNode } from "../../node/node.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import * as programs from "../fixtures/http-programs.js";
import { startNatsServer, type NatsServer } from "../support/nats-server.js";
import { waitFor } from "../support/wait.js";

describe("classifyAddress", () => {
  const cases: [string, string, string?][] = [
    ["127.0.0.1", "loopback"],
    ["127.1", "loopback"],
    ["0x7f000001", "loopback"],
    ["2130706433", "loopback"],
    ["0177.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["10.0.0.1", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.255", "private"],
    ["192.168.1.1", "private"],
    ["169.254.169.254", "linkLocal"],
    ["100.64.0.1", "carrierGradeNat"],
    ["100.127.255.255", "carrierGradeNat"],
    ["224.0.0.1", "multicast"],
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["255.255.255.255", "broadcast"],
    ["240.0.0.1", "reserved"],
    ["192.0.2.1", "reserved"],
    ["198.18.0.1", "reserved"],
    ["192.0.0.8", "reserved"],
    ["8.8.8.8", "public"],
    ["172.32.0.1", "public"],
    ["100.128.0.1", "public"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["::", "unspecified"],
    ["fe80::1", "linkLocal"],
    ["fe80::1%eth0", "linkLocal"],
    ["fc00::1", "uniqueLocal"],
    ["fd12:3456::1", "uniqueLocal"],
    ["ff02::1", "multicast"],
    ["fec0::1", "siteLocal"],
    ["::7f00:1", "reserved"],
    ["2001:db8::1", "reserved"],
    ["100::1", "reserved"],
    ["64:ff9b:1::a00:1", "reserved"],
    ["::ffff:127.0.0.1", "loopback", "IPv4-mapped"],
    ["::ffff:7f00:1", "loopback", "IPv4-mapped"],
    ["::ffff:10.0.0.1", "private", "IPv4-mapped"],
    ["::ffff:169.254.169.254", "linkLocal", "IPv4-mapped"],
    ["::ffff:8.8.8.8", "public", "IPv4-mapped"],
    ["::ffff:0:127.0.0.1", "loopback", "IPv4-translated"],
    ["64:ff9b::127.0.0.1", "loopback", "NAT64"],
    ["64:ff9b::8.8.8.8", "public", "NAT64"],
    ["2002:7f00:1::1", "loopback", "6to4"],
    ["2002:c0a8:101::1", "private", "6to4"],
    ["2002:808:808::1", "public", "6to4"],
    // Teredo: server 65.54.227.120, client (inverted in the last 32 bits) 10.0.0.1 / 8.8.8.8.
    ["2001:0:4136:e378:8000:63bf:f5ff:fffe", "private", "Teredo"],
    ["2001:0:4136:e378:8000:63bf:f7f7:f7f7", "public", "Teredo"],
    ["2001:0:7f00:1:8000:63bf:f7f7:f7f7", "loopback", "Teredo"],
    ["2606:4700:4700::1111", "public"],
    ["2001:4860:4860::8888", "public"],
  ];
  it.each(cases)("classifies %s as %s", (address, cls, via) => {
    const v = classifyAddress(address);
    expect(v.class).toBe(cls);
    expect(v.embedded?.via).toBe(via);
  });

  it("names the class in words, with the embedded address", () => {
    expect(describeVerdict(classifyAddress("169.254.169.254"))).toBe("link-local (cloud metadata endpoint)");
    expect(describeVerdict(classifyAddress("::ffff:127.0.0.1"))).toBe("loopback via IPv4-mapped IPv6 (127.0.0.1)");
    expect(describeVerdict(classifyAddress("10.1.2.3"))).toBe("private (RFC 1918)");
  });

  it("throws FM_ERR_BAD_REQUEST for something that is not an IP address", () => {
    expect(() => classifyAddress("example.com")).toThrow(expect.objectContaining({ code: ErrorCode.BadRequest }));
  });
});

function stubLookup(table: Record<string, string[]>, calls: string[] = []): HostLookup {
  return async (host) => {
    calls.push(host);
    const hit = table[host];
    if (hit) return hit.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
    if (host === "localhost") return (await dnsLookup(host, { all: true })).map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
  };
}

async function refusal(p: Promise<unknown>): Promise<FlowmetalError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  if (!FlowmetalError.is(err)) throw new Error(`expected a refusal, got ${String(err)}`);
  return err;
}

describe("vetUrl", () => {
  const lookup = stubLookup({ "public.test": ["8.8.8.8"], "internal.test": ["10.0.0.7"], "mixed.test": ["8.8.8.8", "10.0.0.1"], "v6only.test": ["fd00::5"] });

  it.each(["file:///etc/passwd", "gopher://127.0.0.1:70/", "ftp://example.com/", "data:text/plain,hi", "javascript:alert(1)", "ws://example.com/"])(
    "refuses the scheme of %s",
    async (u) => {
      const err = await refusal(vetUrl(new URL(u), resolveSsrfPolicy({ lookup })));
      expect(err).toMatchObject({ code: ErrorCode.Forbidden, retryable: false, details: { refused: "scheme" } });
    },
  );

  it("checks every resolved address, not just the first", async () => {
    const err = await refusal(vetUrl(new URL("http://mixed.test/"), resolveSsrfPolicy({ lookup })));
    expect(err.details).toMatchObject({ refused: "private", address: "10.0.0.1", host: "mixed.test" });
    expect(err.message).toMatch(/'mixed.test' \(resolves to 10.0.0.1\).*private \(RFC 1918\)/);
  });

  it("pins the first vetted address of a public name", async () => {
    await expect(vetUrl(new URL("https://public.test/x"), resolveSsrfPolicy({ lookup }))).resolves.toMatchObject({ address: "8.8.8.8", port: 443, allowedBy: undefined });
  });

  it("opens a host, a host:port or a CIDR range from the allow list, and nothing more", async () => {
    const policy = resolveSsrfPolicy({ lookup, allow: ["internal.test:8443", "127.1", "[::1]:9000", "fd00::/8"] });
    await expect(vetUrl(new URL("http://internal.test:8443/"), policy)).resolves.toMatchObject({ address: "10.0.0.7", allowedBy: "internal.test:8443" });
    await expect(refusal(vetUrl(new URL("http://internal.test:8444/"), policy))).resolves.toMatchObject({ details: { refused: "private" } });
    await expect(vetUrl(new URL("http://127.0.0.1:1234/"), policy)).resolves.toMatchObject({ allowedBy: "127.1" });
    await expect(vetUrl(new URL("http://[::1]:9000/"), policy)).resolves.toMatchObject({ address: "::1" });
    await expect(refusal(vetUrl(new URL("http://[::1]:9001/"), policy))).resolves.toMatchObject({ details: { refused: "loopback" } });
    await expect(vetUrl(new URL("http://v6only.test/"), policy)).resolves.toMatchObject({ address: "fd00::5", allowedBy: "fd00::/8" });
  });

  it("reports a DNS failure as retryable", async () => {
    const err = await refusal(vetUrl(new URL("http://nowhere.test/"), resolveSsrfPolicy({ lookup })));
    expect(err).toMatchObject({ code: ErrorCode.FunctionFailed, retryable: true, details: { dns: "ENOTFOUND" } });
  });

  it("rejects malformed allow entries at start-up", () => {
    for (const bad of ["", "http://x", "a b", "10.0.0.0/99", "host:99999", "user@host"]) {
      expect(() => resolveSsrfPolicy({ allow: [bad] }), bad).toThrow(expect.objectContaining({ code: ErrorCode.BadRequest }));
    }
  });
});

interface Listener {
  readonly port: number;
  connections: number;
  close(): Promise<void>;
}

/** A server that counts TCP connections; bound to `host` on `port` (0: any free port). */
async function listen(host: string, port: number, handler?: Parameters<typeof createServer>[1]): Promise<Listener> {
  const server: Server = createServer(handler ?? ((_req, res) => void res.end("canary reached")));
  const l = { port: 0, connections: 0, close: async () => { server.closeAllConnections(); await new Promise<void>((r) => server.close(() => r())); } };
  server.on("connection", () => void l.connections++);
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  l.port = (server.address() as AddressInfo).port;
  return l;
}

describe("SSRF matrix (T08) through a running connector", () => {
  let nats: NatsServer;
  let node: FlowmetalNode;
  let fm: Client;
  let http: HttpRequestConnector;
  let canary: Listener;
  let canary6: Listener | undefined;
  let allowed: Listener;
  const lookups: string[] = [];

  beforeAll(async () => {
    nats = await startNatsServer();
    node = await createNode({ servers: nats.url, modules: Object.values(programs), shards: 2 });
    fm = await createClient({ servers: nats.url });
    canary = await listen("127.0.0.1", 0);
    // The same port on ::1, so `[::1]:<p>` would land on a canary too (if this host has IPv6 loopback).
    canary6 = await listen("::1", canary.port).catch(() => undefined);
    allowed = await listen("127.0.0.1", 0, (req, res) => {
      const to: Record<string, string> = {
        "/to-canary": `http://127.0.0.1:${canary.port}/`,
        "/to-localhost": `http://localhost:${canary.port}/`,
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-file": "file:///etc/passwd",
        "/to-mapped": `http://[::ffff:127.0.0.1]:${canary.port}/`,
      };
      const location = to[req.url ?? ""];
      if (location) return void res.writeHead(302, { location }).end();
      res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ host: req.headers.host }));
    });
    const lookup = stubLookup({
      "internal.test": ["10.0.0.7"],
      "metadata.test": ["169.254.169.254"],
      "mixed.test": ["8.8.8.8", "127.0.0.1"],
      "rebind.test": ["127.0.0.1"],
    }, lookups);
    http = await createHttpRequestConnector({ servers: nats.url, allow: [`127.0.0.1:${allowed.port}`, `pinned.test:${allowed.port}`], lookup: async (host) => {
      // pinned.test rebinds after its first answer: the connection must still go where the vetted answer said.
      if (host === "pinned.test") {
        lookups.push(host);
        return [{ address: lookups.filter((h) => h === host).length === 1 ? "127.0.0.1" : "10.0.0.1", family: 4 }];
      }
      return lookup(host);
    } });
  });
  afterAll(async () => {
    await http?.close();
    await fm?.close();
    await node?.close();
    await nats?.[Symbol.asyncDispose]();
    await canary?.close();
    await canary6?.close();
    await allowed?.close();
  });

  it("refuses every target before connecting, and the canaries see zero connections", async () => {
    const p = canary.port;
    const a = allowed.port;
    const targets: [string, string][] = [
      [`http://127.1:${p}/`, "loopback"],
      [`http://0x7f000001:${p}/`, "loopback"],
      [`http://2130706433:${p}/`, "loopback"],
      [`http://0177.0.0.1:${p}/`, "loopback"],
      [`http://[::1]:${p}/`, "loopback"],
      [`http://[::ffff:127.0.0.1]:${p}/`, "loopback"],
      ["http://169.254.169.254/latest/meta-data/", "linkLocal"],
      ["http://10.0.0.1/", "private"],
      ["http://192.168.1.1/", "private"],
      ["http://172.16.0.1/", "private"],
      ["http://100.64.0.1/", "carrierGradeNat"],
      [`http://0.0.0.0:${p}/`, "unspecified"],
      [`http://localhost:${p}/`, "loopback"],
      [`http://127.0.0.1:${nats.port}/`, "loopback"],
      [`http://internal.test:${p}/`, "private"],
      ["http://metadata.test/", "linkLocal"],
      [`http://mixed.test:${p}/`, "loopback"],
      [`http://rebind.test:${p}/`, "loopback"],
      [`http://127.0.0.1:${a}/to-canary`, "loopback"],
      [`http://127.0.0.1:${a}/to-localhost`, "loopback"],
      [`http://127.0.0.1:${a}/to-mapped`, "loopback"],
      [`http://127.0.0.1:${a}/to-metadata`, "linkLocal"],
      [`http://127.0.0.1:${a}/to-file`, "scheme"],
      ["file:///etc/passwd", "scheme"],
      [`gopher://127.0.0.1:${p}/_GET%20/`, "scheme"],
    ];
    const started = Date.now();
    await Promise.all(targets.map(([url], i) => fm.ask(`fetcher/ssrf-${i}`, { type: "FETCH", request: { url } satisfies HttpRequestInput })));
    const errors = await Promise.all(
      targets.map(async (_t, i) => {
        const actor = `fetcher/ssrf-${i}`;
        await waitFor(async () => ["done", "failed"].includes(String((await fm.get(actor)).value)), { what: `${actor} to finish` });
        return (await fm.get(actor)).context as { error: { code: string; message: string; retryable: boolean; details?: { refused?: string } } | null; response: unknown };
      }),
    );
    // Refusals are terminal and immediate: no attempt timed out against 10.x or 169.254.x, nothing was retried.
    expect(Date.now() - started).toBeLessThan(8_000);
    targets.forEach(([url, cls], i) => {
      const c = errors[i];
      expect(c?.response, url).toBeNull();
      expect(c?.error, url).toMatchObject({ code: ErrorCode.Forbidden, retryable: false, details: { refused: cls } });
      if (cls !== "scheme") expect(c?.error?.message, url).toMatch(/SSRF protection allows only public addresses/);
    });
    expect(errors[6]?.error?.message).toMatch(/link-local \(cloud metadata endpoint\)/);
    expect(errors[5]?.error?.message).toMatch(/IPv4-mapped/);
    expect(canary.connections).toBe(0);
    expect(canary6?.connections ?? 0).toBe(0);
    // Only the allowed server's redirecting routes were reached.
    expect(allowed.connections).toBe(5);
  });

  it("connects only to the vetted address even when DNS answers differently later", async () => {
    const before = allowed.connections;
    await fm.ask("fetcher/pinned", { type: "FETCH", request: { url: `http://pinned.test:${allowed.port}/hello` } });
    await waitFor(async () => (await fm.get("fetcher/pinned")).value !== "fetching");
    const v = await fm.get("fetcher/pinned");
    expect(v.context).toMatchObject({ response: { status: 200, body: { host: `pinned.test:${allowed.port}` } } });
    expect(lookups.filter((h) => h === "pinned.test")).toHaveLength(1);
    expect(allowed.connections).toBe(before + 1);
  });
});
