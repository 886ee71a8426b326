#!/usr/bin/env node
// node/cli/main.ts — the `flowmetal` command: dev, node, send, ask, get, history, replay.
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { jetstreamManager } from "@nats-io/jetstream";
import { connectNats } from "../../protocol/connect.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import { createSubjects, parseActorAddress } from "../../protocol/subjects.js";
import type { StepRecord } from "../../protocol/records.js";
import { createClient } from "../client/index.js";
import { startDevServer } from "../dev-server.js";
import { configureFailpoints, failpoint } from "../failpoints.js";
import { readAll } from "../journal.js";
import { loadModules } from "../loader.js";
import { createLogger } from "../logger.js";
import { checkReplay } from "../replay.js";
import { lsCommand, prepareObservability, statsCommand } from "./admin.js";

const usage = `flowmetal — durable XState programs on NATS JetStream

usage:
  flowmetal dev [--port 4222] [--callback-port 8788] [--http-port 8787] [--allow host:port]… [--data .flowmetal] <modules…>
                                                                 private nats-server, a node, the connectors and the web UI, for one machine
  flowmetal node [--nats URL] [--name N] [--shards N] [--replicas N] [--heartbeat-ttl MS] [--http-port N [--http-host H]] <modules…>
                                                                 join the cluster: own shards, take over dead nodes' shards; with
                                                                 --http-port, the admin API, web UI and /metrics (tokens: $FLOWMETAL_ADMIN_TOKEN, $FLOWMETAL_READ_TOKEN)
  flowmetal send <program/key> '<event JSON>' [--msg-id ID]      durably accept an event
  flowmetal ask <program/key> '<event JSON>' [--msg-id ID] [--timeout MS]
                                                                 send and wait for the step's outcome
  flowmetal get <program/key>                                    current state
  flowmetal history <program/key> [--at N] [--after CURSOR] [--limit N] [--json]
  flowmetal replay <program/key> <modules…>                      re-run the journal through the program
  flowmetal ls <program> [--state S] [--status active|done] [--after KEY] [--limit N] [--json]
                                                                 actors from the index, by state and status
  flowmetal stats <program> [--json]                             how many actors are in each state
  flowmetal connector http-request [--allow host[:port]|cidr]…   HTTP calls for programs (private addresses refused)
  flowmetal connector http-callback [--port 8788] [--host 127.0.0.1] [--public-url URL]
                                                                 webhooks into actors (secret: $FLOWMETAL_CALLBACK_SECRET)
  flowmetal cluster [--json]                                     nodes, shards, owners, epochs
  flowmetal move <shard|program/key> <node>                      move a shard (and every actor in it), live
  flowmetal drain <node> [--undo]                                move every shard off a node, with progress

common options: --nats URL (default: $FLOWMETAL_NATS, else the dev server in ./.flowmetal, else nats://127.0.0.1:4222)
                --prefix fm
modules are .ts or .js files; every exported defineProgram/defineFunction is loaded.`;

const options = {
  nats: { type: "string" },
  prefix: { type: "string" },
  port: { type: "string" },
  data: { type: "string" },
  name: { type: "string" },
  shards: { type: "string" },
  replicas: { type: "string" },
  "heartbeat-ttl": { type: "string" },
  host: { type: "string" },
  allow: { type: "string", multiple: true },
  "callback-port": { type: "string" },
  "public-url": { type: "string" },
  undo: { type: "boolean" },
  "msg-id": { type: "string" },
  timeout: { type: "string" },
  at: { type: "string" },
  after: { type: "string" },
  limit: { type: "string" },
  json: { type: "boolean" },
  help: { type: "boolean", short: "h" },
  "http-port": { type: "string" },
  "http-host": { type: "string" },
  state: { type: "string" },
  status: { type: "string" },
} as const;

function out(s: string): void {
  process.stdout.write(`${s}\n`);
}

function int(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new FlowmetalError(ErrorCode.BadRequest, `--${name} must be a non-negative integer, got '${v}'`);
  return n;
}

async function natsUrl(flag: string | undefined): Promise<string> {
  if (flag) return flag;
  if (process.env.FLOWMETAL_NATS) return process.env.FLOWMETAL_NATS;
  try {
    const dev = JSON.parse(await readFile(join(".flowmetal", "dev.json"), "utf8")) as { url?: string };
    if (dev.url) return dev.url;
  } catch {
    // no dev server here
  }
  return "nats://127.0.0.1:4222";
}

function parseEventArg(text: string | undefined): { type: string } {
  if (!text) throw new FlowmetalError(ErrorCode.BadRequest, "missing event: pass it as JSON, e.g. '{\"type\":\"PLACE\"}'");
  try {
    return JSON.parse(text) as { type: string };
  } catch (err) {
    throw new FlowmetalError(ErrorCode.MalformedPayload, `event is not valid JSON: ${(err as Error).message}`);
  }
}

/** Destinations the HTTP request connector may call although they are not public: --allow and $FLOWMETAL_HTTP_ALLOW. */
function allowList(v: { allow?: string[] | undefined }): string[] {
  const env = (process.env.FLOWMETAL_HTTP_ALLOW ?? "").split(",").map((x) => x.trim()).filter(Boolean);
  return [...(v.allow ?? []), ...env];
}

async function startRequestConnector(url: string, v: { allow?: string[] | undefined; prefix?: string | undefined }, log: ReturnType<typeof createLogger>) {
  const { createHttpRequestConnector } = await import("../../connectors/http-request/index.js");
  return createHttpRequestConnector({ servers: url, allow: allowList(v), log, ...(v.prefix ? { prefix: v.prefix } : {}) });
}

async function startCallbackConnector(url: string, v: { port?: string | undefined; host?: string | undefined; "public-url"?: string | undefined; prefix?: string | undefined }, log: ReturnType<typeof createLogger>, secret = process.env.FLOWMETAL_CALLBACK_SECRET) {
  const { createHttpCallbackConnector } = await import("../../connectors/http-callback/index.js");
  if (!secret) throw new FlowmetalError(ErrorCode.BadRequest, "set FLOWMETAL_CALLBACK_SECRET (at least 32 bytes) to sign callback URLs; every replica needs the same one");
  let providers;
  if (process.env.FLOWMETAL_CALLBACK_PROVIDERS) {
    try {
      providers = JSON.parse(process.env.FLOWMETAL_CALLBACK_PROVIDERS) as Record<string, never>;
    } catch (err) {
      throw new FlowmetalError(ErrorCode.BadRequest, `FLOWMETAL_CALLBACK_PROVIDERS is not JSON: ${(err as Error).message}`);
    }
  }
  return createHttpCallbackConnector({
    servers: url,
    secret,
    log,
    ...(v.prefix ? { prefix: v.prefix } : {}),
    ...(v.port ? { port: int("port", v.port)! } : {}),
    ...(v.host ? { host: v.host } : {}),
    ...(v["public-url"] ? { publicUrl: v["public-url"] } : {}),
    ...(providers ? { providers } : {}),
    ...(process.env.FLOWMETAL_INGRESS_TOKEN ? { ingressToken: process.env.FLOWMETAL_INGRESS_TOKEN } : {}),
    afterPersist: () => failpoint("after-persist"),
  });
}

function waitForSignal(): Promise<string> {
  return new Promise((r) => {
    process.once("SIGINT", () => r("SIGINT"));
    process.once("SIGTERM", () => r("SIGTERM"));
  });
}

/**
 * Waits for SIGINT/SIGTERM, then drains. Everything a process here holds is durable in JetStream, so a drain
 * that cannot finish (NATS unreachable, a step retrying its append) must not keep the process alive: a second
 * signal, or `FLOWMETAL_SHUTDOWN_TIMEOUT_MS` (default 30 s) without finishing, ends it at once — no worse
 * than a kill -9, which every guarantee already allows for.
 */
async function drainOnSignal(log: ReturnType<typeof createLogger>, what: string, drain: () => Promise<void>, onForce?: () => void): Promise<void> {
  const signal = await waitForSignal();
  log.info({ signal }, what);
  const ms = Number(process.env.FLOWMETAL_SHUTDOWN_TIMEOUT_MS ?? 30_000);
  const force = (why: string) => {
    process.stderr.write(`flowmetal: shutdown cut short (${why}); nothing durable is lost\n`);
    onForce?.();
    process.exit(1);
  };
  const timer = setTimeout(() => force(`still draining after ${ms} ms: is NATS reachable?`), ms);
  const again = () => force("second signal");
  process.once("SIGINT", again);
  process.once("SIGTERM", again);
  try {
    await drain();
  } finally {
    clearTimeout(timer);
    process.off("SIGINT", again);
    process.off("SIGTERM", again);
  }
}

async function startNode(modules: string[], url: string, v: Record<string, unknown>, log: ReturnType<typeof createLogger>, extra: Record<string, unknown> = {}) {
  if (modules.length === 0) throw new FlowmetalError(ErrorCode.BadRequest, "give at least one module with programs, e.g. examples/order.ts");
  const loaded = await loadModules(modules);
  const { createClusterNode } = await import("../../cluster/index.js");
  const node = await createClusterNode({
    servers: url,
    modules: loaded.exports,
    ...(v.prefix ? { prefix: String(v.prefix) } : {}),
    ...(v.name ? { name: String(v.name) } : {}),
    ...(v.shards ? { shards: int("shards", String(v.shards)) } : {}),
    ...(v.replicas ? { replicas: int("replicas", String(v.replicas)) } : {}),
    ...(process.env.FLOWMETAL_PASSIVATE_MS ? { passivateAfterMs: Number(process.env.FLOWMETAL_PASSIVATE_MS) } : {}),
    ...(v["heartbeat-ttl"] ?? process.env.FLOWMETAL_HEARTBEAT_TTL_MS
      ? { heartbeatTtlMs: int("heartbeat-ttl", String(v["heartbeat-ttl"] ?? process.env.FLOWMETAL_HEARTBEAT_TTL_MS)) }
      : {}),
    log,
    ...extra,
  });
  out(`flowmetal node ${node.name} ready on ${url}`);
  out(`  programs: ${node.programs.join(", ") || "none"}`);
  out(`  functions: ${node.functions.join(", ") || "none"}`);
  return node;
}

/** The dev callback secret: made once, kept in the data folder so minted URLs survive restarts. */
async function devSecret(dataDir: string): Promise<string> {
  const file = join(dataDir, "callback-secret");
  try {
    return (await readFile(file, "utf8")).trim();
  } catch {
    const secret = randomBytes(32).toString("hex");
    await writeFile(file, secret, { mode: 0o600 });
    return secret;
  }
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === "help" || cmd === "--help" || cmd === "-h") {
    out(usage);
    return;
  }
  const { values: v, positionals: pos } = parseArgs({ args: rest, options, allowPositionals: true, strict: true });
  if (v.help) {
    out(usage);
    return;
  }
  const prefix = v.prefix;
  switch (cmd) {
    case "dev": {
      const dataDir = resolve(v.data ?? ".flowmetal");
      const server = await startDevServer({ dataDir, port: int("port", v.port) ?? 4222, ...(process.env.FLOWMETAL_NATS_SERVER ? { bin: process.env.FLOWMETAL_NATS_SERVER } : {}) });
      await mkdir(dataDir, { recursive: true });
      await writeFile(join(dataDir, "dev.json"), JSON.stringify({ url: server.url }));
      out(`nats-server ${server.version} on ${server.url} (data in ${dataDir})`);
      configureFailpoints(process.env.FLOWMETAL_FAILPOINTS);
      const log = createLogger({ level: process.env.FLOWMETAL_LOG_LEVEL ?? "info" });
      const stack: { drain(): Promise<void> }[] = [{ drain: () => server.stop() }];
      try {
        const obs = await prepareObservability(server.url, prefix, log);
        stack.push(obs);
        const node = await startNode(pos, server.url, { ...v, name: v.name ?? "dev" }, log, obs.nodeOptions);
        stack.push(node);
        const ui = await obs.start({ node, modules: pos, http: { port: int("http-port", v["http-port"]) ?? 8787, host: v["http-host"] } });
        const cbPort = int("callback-port", v["callback-port"]) ?? 8788;
        const cb = await startCallbackConnector(server.url, { port: String(cbPort) }, log, process.env.FLOWMETAL_CALLBACK_SECRET ?? (await devSecret(dataDir)));
        stack.push(cb);
        out(`http callback connector on ${cb.url}`);
        const allowed = allowList(v);
        stack.push(await startRequestConnector(server.url, v, log));
        out(`http request connector ready (SSRF protection on${allowed.length ? `; allowed: ${allowed.join(", ")}` : "; open local services with --allow host:port"})`);
        out(`web UI, admin API and /metrics on ${ui}`);
        out(`try: flowmetal ask order/o-17 '{"type":"PLACE","amountCents":4213,"shipWithinMs":60000}'   or   nats req fm.in.<program>.<key> '{"type":"..."}'`);
      } catch (err) {
        for (const r of stack.reverse()) await r.drain().catch(() => undefined);
        throw err;
      }
      await drainOnSignal(log, "stopping", async () => {
        for (const r of stack.reverse()) await r.drain();
      }, () => void server.stop());
      return;
    }
    case "node": {
      configureFailpoints(process.env.FLOWMETAL_FAILPOINTS);
      const log = createLogger({ level: process.env.FLOWMETAL_LOG_LEVEL ?? "info" });
      const url = await natsUrl(v.nats);
      const obs = await prepareObservability(url, prefix, log, int("replicas", v.replicas));
      const node = await startNode(pos, url, v, log, obs.nodeOptions).catch(async (err: unknown) => {
        await obs.drain();
        throw err;
      });
      const httpPort = int("http-port", v["http-port"] ?? process.env.FLOWMETAL_HTTP_PORT);
      const ui = await obs.start({ node, modules: pos, http: httpPort === undefined ? undefined : { port: httpPort, host: v["http-host"] ?? process.env.FLOWMETAL_HTTP_HOST } }).catch(async (err: unknown) => {
        await obs.drain();
        await node.drain();
        throw err;
      });
      if (ui) out(`  web UI, admin API and /metrics on ${ui}`);
      await drainOnSignal(log, "draining", async () => {
        await obs.drain();
        await node.drain();
      });
      return;
    }
    case "send":
    case "ask":
    case "get":
    case "history": {
      const actor = pos[0];
      if (!actor) throw new FlowmetalError(ErrorCode.BadRequest, `usage: flowmetal ${cmd} <program/key>${cmd === "send" || cmd === "ask" ? " '<event JSON>'" : ""}`);
      await using fm = await createClient({ servers: await natsUrl(v.nats), ...(prefix ? { prefix } : {}) });
      const msgId = v["msg-id"];
      if (cmd === "send") out(JSON.stringify(await fm.send(actor, parseEventArg(pos[1]), msgId ? { msgId } : {})));
      else if (cmd === "ask") {
        const timeoutMs = int("timeout", v.timeout);
        out(JSON.stringify(await fm.ask(actor, parseEventArg(pos[1]), { ...(msgId ? { msgId } : {}), ...(timeoutMs ? { timeoutMs } : {}) }), null, 2));
      } else if (cmd === "get") out(JSON.stringify(await fm.get(actor), null, 2));
      else {
        const at = int("at", v.at);
        const after = int("after", v.after);
        const limit = int("limit", v.limit);
        const page = await fm.history(actor, { ...(at !== undefined ? { at } : {}), ...(after !== undefined ? { after } : {}), ...(limit !== undefined ? { limit } : {}) });
        if (v.json || at !== undefined) out(JSON.stringify(at !== undefined ? page.steps[0] : page, null, 2));
        else {
          for (const s of page.steps) {
            const fx = s.effects.map((e) => e.kind).join(",") || "-";
            out(`${String(s.step).padStart(5)}  ${s.kind.padEnd(6)} ${s.event.type.padEnd(28)} → ${JSON.stringify(s.value)} ${s.outcome === "ok" ? "" : `[${s.outcome}: ${s.error?.code ?? ""}]`}  effects: ${fx}`);
          }
          if (page.next !== undefined) out(`more: flowmetal history ${actor} --after ${page.next}`);
        }
      }
      return;
    }
    case "replay": {
      const [actor, ...modules] = pos;
      const a = parseActorAddress(actor);
      const loaded = await loadModules(modules);
      const program = loaded.programs.get(a.program);
      if (!program) throw new FlowmetalError(ErrorCode.UnknownProgram, `no program '${a.program}' in ${modules.join(", ") || "(no modules given)"}`);
      const nc = await connectNats(await natsUrl(v.nats), { name: "flowmetal-replay" });
      try {
        const jsm = await jetstreamManager(nc);
        const records: StepRecord[] = [];
        for await (const r of readAll(jsm, createSubjects(prefix), a)) records.push(r.record);
        const report = checkReplay(program, records);
        out(JSON.stringify(report, null, 2));
        if (report.divergence) process.exitCode = 3;
      } finally {
        await nc.close();
      }
      return;
    }
    case "connector": {
      const [which] = pos;
      configureFailpoints(process.env.FLOWMETAL_FAILPOINTS);
      const log = createLogger({ level: process.env.FLOWMETAL_LOG_LEVEL ?? "info" });
      const url = await natsUrl(v.nats);
      if (which === "http-callback") {
        const c = await startCallbackConnector(url, v, log);
        out(`flowmetal connector http-callback ready on ${c.url}`);
        await drainOnSignal(log, "stopping", () => c.drain());
        return;
      }
      if (which === "http-request") {
        const c = await startRequestConnector(url, v, log);
        out("flowmetal connector http-request ready");
        await drainOnSignal(log, "stopping", () => c.drain());
        return;
      }
      throw new FlowmetalError(ErrorCode.BadRequest, `unknown connector '${which ?? ""}' (available: http-request, http-callback)`);
    }
    case "ls":
    case "stats": {
      const program = pos[0];
      if (!program) throw new FlowmetalError(ErrorCode.BadRequest, `usage: flowmetal ${cmd} <program>${cmd === "ls" ? " [--state S] [--status S]" : ""}`);
      await using fm = await createClient({ servers: await natsUrl(v.nats), ...(prefix ? { prefix } : {}) });
      if (cmd === "ls") await lsCommand(fm, program, { state: v.state, status: v.status, after: v.after, limit: int("limit", v.limit), json: v.json });
      else await statsCommand(fm, program, v.json);
      return;
    }
    case "cluster":
    case "move":
    case "drain":
      return clusterCommand(cmd, pos, v, await natsUrl(v.nats));
    default:
      throw new FlowmetalError(ErrorCode.BadRequest, `unknown command '${cmd}' (try: flowmetal help)`);
  }
}

async function clusterCommand(cmd: string, pos: string[], v: { json?: boolean | undefined; undo?: boolean | undefined; prefix?: string | undefined; timeout?: string | undefined }, url: string): Promise<void> {
  await using fm = await createClient({ servers: url, ...(v.prefix ? { prefix: v.prefix } : {}) });
  if (cmd === "cluster") {
    const view = await fm.cluster();
    if (v.json) return out(JSON.stringify(view, null, 2));
    out(`${view.nodes.length} node(s), ${view.shards} shards, ${view.replicas} replica(s)`);
    for (const n of view.nodes) out(`  ${n.name.padEnd(20)} ${n.draining ? "draining " : ""}owns ${n.owns.length}: ${n.owns.join(" ")}`);
    const orphans = view.owners.filter((o) => !view.nodes.some((n) => n.name === o.node));
    if (orphans.length) out(`  unowned or owned by a dead node: ${orphans.map((o) => `${o.shard}(${o.node ?? "-"})`).join(" ")}`);
    out("shard  owner                epoch  reason     pinned");
    for (const o of view.owners) out(`${String(o.shard).padStart(5)}  ${(o.node ?? "-").padEnd(20)} ${String(o.epoch).padStart(5)}  ${o.reason.padEnd(10)} ${o.pinned ?? ""}`);
    return;
  }
  if (cmd === "move") {
    const [target, node] = pos;
    if (!target || !node) throw new FlowmetalError(ErrorCode.BadRequest, "usage: flowmetal move <shard|program/key> <node>");
    const r = await fm.move(target, node, int("timeout", v.timeout));
    const who = r.actor ? `${r.actor} is in shard ${r.shard}; ` : "";
    out(`${who}shard ${r.shard} moved from ${r.from ?? "nobody"} to ${r.to} (epoch ${r.epoch}) in ${r.ms} ms; ${r.actors} ${r.actor ? "other " : ""}actor(s) moved with it`);
    return;
  }
  const [node] = pos;
  if (!node) throw new FlowmetalError(ErrorCode.BadRequest, "usage: flowmetal drain <node> [--undo]");
  const r = await fm.drain(node, { undo: v.undo === true });
  if (v.undo) return out(`${node} takes shards again`);
  let left = r.shardsLeft.length;
  out(`draining ${node}: ${left} shard(s) to move`);
  const t0 = Date.now();
  while (left > 0) {
    await new Promise((res) => setTimeout(res, 250));
    const view = await fm.cluster();
    const now = view.owners.filter((o) => o.node === node).length;
    if (now !== left) out(`  ${now} left`);
    left = now;
    if (Date.now() - t0 > 120_000) throw new FlowmetalError(ErrorCode.Timeout, `${node} still owns ${left} shard(s) after 120 s`);
  }
  out(`${node} is drained in ${Date.now() - t0} ms; stop it now, or take it back with: flowmetal drain ${node} --undo`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (FlowmetalError.is(err)) process.stderr.write(`error ${err.code}: ${err.message}\n`);
  else process.stderr.write(`error: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
});
