// node/admin/server.ts — the admin HTTP server every node can run: JSON API with schemas and OpenAPI, web UI, /metrics, health.
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { fastify, type FastifyError, type FastifyInstance, type FastifyReply } from "fastify";
import type { Registry } from "prom-client";
import { ErrorCode, FlowmetalError, toWireError } from "../../protocol/errors.js";
import { createSubjects } from "../../protocol/subjects.js";
import { lazyIndexView, type IndexViewSource } from "../index-projector/view.js";
import { silentLogger, type Logger } from "../logger.js";
import type { FlowmetalNode } from "../node.js";
import type { ProgramDefinition } from "../program.js";
import { createTokenCheck, type AdminTokens, type Scope } from "./auth.js";
import type { LiveStream } from "./live.js";
import { buildOpenApi, type RouteInfo } from "./openapi.js";
import { indexHtml, styleCss } from "./page.js";
import { registerRoutes } from "./routes.js";
import { sharedSchemas } from "./schemas.js";

declare module "fastify" {
  interface FastifyContextConfig {
    /** Token scope a route needs when tokens are configured; absent: public (UI assets, health). */
    scope?: Scope;
  }
}

/** Options of {@link createAdminServer} and {@link buildAdminApp}. */
export interface AdminServerOptions {
  /** An open connection; the server does not close it. */
  nc: NatsConnection;
  /** The node in this process, if any: named in the cluster view, and the single-node fallback of it. */
  node?: FlowmetalNode;
  /** Programs whose statecharts the API and UI show (the ones loaded by the node). */
  programs?: Iterable<ProgramDefinition> | ReadonlyMap<string, ProgramDefinition>;
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** @default 8787 (0 picks a free port) */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** Bearer tokens; with neither set the API is open. */
  tokens?: AdminTokens;
  /** prom-client registry served on `/metrics` (see `createPromMetrics`); without one `/metrics` answers 404. */
  registry?: Registry;
  /** The actor index (share the node's). @default opened by the server */
  index?: IndexViewSource;
  log?: Logger;
  /** Folder of the compiled UI scripts. @default found next to this module, or in dist/ when run from source */
  uiDir?: string;
}

/** A running admin server. */
export interface AdminServer extends AsyncDisposable {
  /** `http://host:port` */
  readonly url: string;
  readonly app: FastifyInstance;
  /** Stops accepting connections, ends live streams, closes. */
  drain(): Promise<void>;
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

const statusOf: Partial<Record<string, number>> = {
  [ErrorCode.BadRequest]: 400,
  [ErrorCode.InvalidToken]: 400,
  [ErrorCode.InvalidAddress]: 400,
  [ErrorCode.InvalidEvent]: 400,
  [ErrorCode.MalformedPayload]: 400,
  [ErrorCode.PayloadTooLarge]: 413,
  [ErrorCode.PayloadTooDeep]: 400,
  [ErrorCode.Unauthorized]: 401,
  [ErrorCode.UnknownProgram]: 404,
  [ErrorCode.UnknownActor]: 404,
  [ErrorCode.Unavailable]: 503,
  [ErrorCode.Timeout]: 504,
};

function defaultUiDir(): string {
  const here = new URL("./ui/", import.meta.url);
  if (existsSync(new URL("app.js", here))) return fileURLToPath(here);
  // Run from source (tests): the scripts are compiled into dist/ by `npm run build`.
  return fileURLToPath(new URL("../../dist/node/admin/ui/", import.meta.url));
}

const csp = "default-src 'self'; script-src 'self'; worker-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/**
 * Builds the admin app without listening (use `app.inject()` to test it, or {@link createAdminServer}).
 * Routes: `/api/...` (see `/api/openapi.json`), `/metrics`, `/healthz`, `/readyz`, and the UI at `/`.
 */
export async function buildAdminApp(options: AdminServerOptions): Promise<{ app: FastifyInstance; stop(): Promise<void> }> {
  const { nc } = options;
  const log = options.log ?? silentLogger;
  const subjects = createSubjects(options.prefix);
  const jsm = await jetstreamManager(nc);
  const programs = new Map<string, ProgramDefinition>(
    options.programs instanceof Map ? options.programs : [...((options.programs ?? []) as Iterable<ProgramDefinition>)].map((p) => [p.name, p]),
  );
  const ownIndex = options.index ? undefined : lazyIndexView({ nc, prefix: subjects.prefix, log });
  const index = options.index ?? ownIndex!;
  let indexReady = false;
  // Open the index now, so the first page is fast and /readyz tells when fleet queries work.
  index.get().then(() => (indexReady = true), (err: unknown) => log.warn({ err: String((err as Error)?.message ?? err) }, "actor index not available yet"));
  const auth = createTokenCheck(options.tokens ?? {});
  const streams = new Set<LiveStream>();
  const routes: RouteInfo[] = [];
  const uiDir = options.uiDir ?? defaultUiDir();
  const vendor = createRequire(import.meta.url);
  const vendorFiles: Record<string, string> = {
    "elk-api.js": vendor.resolve("elkjs/lib/elk-api.js"),
    "elk-worker.min.js": vendor.resolve("elkjs/lib/elk-worker.min.js"),
  };
  const fileCache = new Map<string, Promise<Buffer>>();
  const readCached = (path: string) => {
    let p = fileCache.get(path);
    if (!p) {
      p = readFile(path);
      p.catch(() => fileCache.delete(path));
      fileCache.set(path, p);
    }
    return p;
  };

  const app = fastify({ logger: false, bodyLimit: 1024 * 1024, routerOptions: { maxParamLength: 300 }, forceCloseConnections: true });
  for (const s of sharedSchemas) app.addSchema(s);
  app.addHook("onRoute", (r) => {
    if (r.schema && (r.url.startsWith("/api/") || r.url === "/metrics")) routes.push({ method: r.method, url: r.url, schema: r.schema as Record<string, unknown> | undefined, scope: r.config?.scope });
  });
  app.addHook("onRequest", async (req, reply) => {
    const need = req.routeOptions.config.scope;
    if (!need || !auth.enabled) return;
    const got = auth.scopeOf(req.headers.authorization);
    if (!got) {
      reply.header("WWW-Authenticate", 'Bearer realm="flowmetal"');
      return reply.code(401).send(toWireError(new FlowmetalError(ErrorCode.Unauthorized, "missing or wrong bearer token: send Authorization: Bearer <token>")));
    }
    if (need === "admin" && got !== "admin") {
      return reply.code(403).send(toWireError(new FlowmetalError(ErrorCode.Unauthorized, "this needs the admin token; the token given is read-only")));
    }
  });
  app.addHook("onResponse", async (req, reply) => {
    log.debug({ method: req.method, url: req.url, status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, "admin request");
  });
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err.validation) {
      return reply.code(400).send(toWireError(new FlowmetalError(ErrorCode.BadRequest, `${err.validationContext ?? "request"} ${err.validation[0]?.instancePath ?? ""} ${err.validation[0]?.message ?? "is invalid"}`.replace(/\s+/g, " ").trim())));
    }
    if (FlowmetalError.is(err)) return reply.code(statusOf[err.code] ?? 500).send(toWireError(err));
    if (typeof err.statusCode === "number" && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send(toWireError(new FlowmetalError(ErrorCode.BadRequest, err.message)));
    }
    log.error({ method: req.method, url: req.url, err: String(err?.stack ?? err) }, "admin request failed");
    return reply.code(500).send(toWireError(err));
  });
  app.setNotFoundHandler((req, reply) => reply.code(404).send(toWireError(new FlowmetalError(ErrorCode.BadRequest, `no route ${req.method} ${req.url.split("?")[0]} (see /api/openapi.json)`))));

  registerRoutes(app, { nc, jsm, subjects, programs, index, node: options.node, streams });

  app.get("/metrics", { config: { scope: "read" }, schema: { summary: "Prometheus metrics", tags: ["metrics"], response: { 200: { type: "string" } } } }, async (_req, reply) => {
    if (!options.registry) throw new FlowmetalError(ErrorCode.BadRequest, "metrics are not configured on this server");
    const text = await options.registry.metrics();
    return reply.type(options.registry.contentType).send(text);
  });
  app.get("/healthz", async () => ({ ok: true }));
  app.get("/readyz", async (_req, reply) => {
    const ready = !nc.isClosed() && indexReady;
    return reply.code(ready ? 200 : 503).send({ ready, nats: !nc.isClosed(), index: indexReady });
  });
  app.get("/api/openapi.json", async () => buildOpenApi(routes, sharedSchemas as unknown as Record<string, unknown>[], { title: "Flowmetal admin API", version: "1" }));

  // The UI: public files (no data in them); the data comes from the API, with the token if one is needed.
  const page = (type: string, body: string | Buffer, cache: string) => ({ type, body, cache });
  const sendFile = (reply: FastifyReply, f: { type: string; body: string | Buffer; cache: string }) =>
    reply.header("Content-Type", f.type).header("Cache-Control", f.cache).header("X-Content-Type-Options", "nosniff").header("Content-Security-Policy", csp).send(f.body);
  app.get("/", async (_req, reply) => sendFile(reply, page("text/html; charset=utf-8", indexHtml, "no-cache")));
  app.get("/ui/style.css", async (_req, reply) => sendFile(reply, page("text/css; charset=utf-8", styleCss, "no-cache")));
  app.get("/ui/vendor/:file", async (req, reply) => {
    const path = vendorFiles[(req.params as { file: string }).file];
    if (!path) return reply.code(404).send(toWireError(new FlowmetalError(ErrorCode.BadRequest, "no such file")));
    return sendFile(reply, page("text/javascript; charset=utf-8", await readCached(path), "public, max-age=86400"));
  });
  app.get("/ui/:file", async (req, reply) => {
    const file = (req.params as { file: string }).file;
    if (!/^[a-z][a-z0-9-]*\.js$/.test(file)) return reply.code(404).send(toWireError(new FlowmetalError(ErrorCode.BadRequest, "no such file")));
    let body: Buffer;
    try {
      body = await readCached(`${uiDir}/${file}`);
    } catch {
      return reply.code(404).send(toWireError(new FlowmetalError(ErrorCode.BadRequest, `no UI file ${file} in ${uiDir} (run npm run build)`)));
    }
    return sendFile(reply, page("text/javascript; charset=utf-8", body, "no-cache"));
  });

  await app.ready();
  return {
    app,
    async stop() {
      for (const s of streams) s.close();
      streams.clear();
      await app.close();
      await ownIndex?.close();
    },
  };
}

/**
 * Starts the admin server: the JSON API (schemas, OpenAPI at `/api/openapi.json`), the web UI at `/`,
 * Prometheus metrics at `/metrics`, `/healthz` and `/readyz`. With `tokens`, every API route needs
 * `Authorization: Bearer <token>`: the read token for reading, the admin token for everything.
 *
 * @example
 * const admin = await createAdminServer({ nc, node, programs: loaded.programs.values(), port: 8787, registry: prom.registry });
 * log.info({ url: admin.url }, "ui ready");
 */
export async function createAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const log = options.log ?? silentLogger;
  const built = await buildAdminApp(options);
  const host = options.host ?? "127.0.0.1";
  let address: string;
  try {
    address = await built.app.listen({ host, port: options.port ?? 8787 });
  } catch (err) {
    await built.stop();
    const inUse = /EADDRINUSE/.test(String((err as Error)?.message ?? err));
    throw new FlowmetalError(ErrorCode.Unavailable, inUse ? `port ${options.port ?? 8787} on ${host} is in use: pick another with --http-port` : `admin server could not listen on ${host}: ${(err as Error).message}`, { cause: err });
  }
  const url = address.replace("[::1]", "localhost");
  if (!options.tokens?.admin && !options.tokens?.read && !/^(127\.|::1$|localhost$)/.test(host)) {
    log.warn({ host }, "admin API listens beyond loopback without tokens: set FLOWMETAL_ADMIN_TOKEN");
  }
  log.info({ url }, "admin server listening");
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let stopping: Promise<void> | undefined;
  const drain = () =>
    (stopping ??= (async () => {
      await built.stop().catch(() => undefined);
      resolveClosed();
    })());
  return { url, app: built.app, drain, close: drain, closed, [Symbol.asyncDispose]: drain };
}
