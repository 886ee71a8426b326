// connectors/http-callback/index.ts — the HTTP callback connector: mints callback URLs, takes webhooks, persists them into actor inboxes before answering.
import { createHash, timingSafeEqual } from "node:crypto";
import { jetstream, jetstreamManager, type JetStreamClient } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../../protocol/connect.js";
import { fastify, type FastifyInstance, type FastifyReply } from "fastify";
import { encodePayload } from "../../protocol/codec.js";
import { ErrorCode, FlowmetalError, toWireError } from "../../protocol/errors.js";
import { parseEvent } from "../../protocol/events.js";
import { silentLogger, type Logger } from "../../protocol/logger.js";
import { resolveRetryPolicy } from "../../protocol/retry.js";
import { ContentType, Header, createSubjects, parseActorAddress, parseActorKey, parseProgramName, type Subjects } from "../../protocol/subjects.js";
import { createFunctionWorker, type FunctionWorker } from "../../protocol/worker.js";
import { verifySignature, type ProviderSignature } from "./signatures.js";
import { mintToken, parseSecret, verifyToken } from "./tokens.js";

export type { ProviderSignature } from "./signatures.js";
export { mintToken, verifyToken, type CallbackClaims } from "./tokens.js";

/** The function programs invoke to get a callback URL. */
export const callbackFunction = "http.callback";

export interface HttpCallbackOptions {
  /** NATS server URL(s); ignored when `nc` is given. @default "nats://127.0.0.1:4222" */
  servers?: string | string[];
  nc?: NatsConnection;
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** Key that signs callback tokens, at least 32 bytes. Every replica must share it. */
  secret: string | Buffer;
  /** @default "127.0.0.1" */
  host?: string;
  /** 0 picks a free port. @default 8788 */
  port?: number;
  /** Base URL that minted callback URLs start with (what the outside world reaches). @default http://<host>:<port> */
  publicUrl?: string;
  /** Largest body accepted; larger ones get 413 before they are read. Keep it below the nodes' payload limit. @default 524288 */
  maxBodyBytes?: number;
  /** How long a minted URL stays valid unless the program says otherwise. @default 7 days */
  defaultExpiresInMs?: number;
  /** Provider signatures to check, by program name. */
  providers?: Record<string, ProviderSignature>;
  /** Enables `POST /ingress/<program>/<key>` for callers presenting `Authorization: Bearer <token>`. */
  ingressToken?: string;
  /** How long to wait for JetStream to persist a delivery before answering 503. @default 5000 */
  publishTimeoutMs?: number;
  log?: Logger;
  /** Test hook: runs after a delivery is persisted, before the reply (the crash tests kill the process here). */
  afterPersist?: () => void;
}

export interface HttpCallbackConnector extends AsyncDisposable {
  /** Where the HTTP server listens. */
  readonly url: string;
  readonly server: FastifyInstance;
  drain(): Promise<void>;
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

class HttpError extends Error {
  constructor(readonly status: number, readonly error: FlowmetalError, readonly extraHeaders: Record<string, string> = {}) {
    super(error.message);
  }
}

const fail = (status: number, code: FlowmetalError["code"], message: string, h?: Record<string, string>) => new HttpError(status, new FlowmetalError(code, message), h);

function bodyOf(raw: Buffer, contentType: string | undefined): unknown {
  const ct = (contentType ?? "").split(";")[0]!.trim().toLowerCase();
  if (raw.length === 0) return null;
  if (ct === "application/json" || ct.endsWith("+json")) {
    try {
      return JSON.parse(raw.toString("utf8"));
    } catch (err) {
      throw fail(400, ErrorCode.MalformedPayload, `body is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (ct === "application/x-www-form-urlencoded") return Object.fromEntries(new URLSearchParams(raw.toString("utf8")));
  throw fail(415, ErrorCode.MalformedPayload, `unsupported content type '${ct || "(none)"}': send application/json or application/x-www-form-urlencoded`);
}

function sameSecret(given: string, want: string): boolean {
  const a = Buffer.from(given);
  const b = Buffer.from(want);
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Starts the callback connector: a function worker for `http.callback` (a program invokes it to get a
 * signed URL bound to itself) and an HTTP server. `POST /cb/<token>` is persisted into the actor's inbox
 * as the event named in the token, and only then answered 202; the same delivery retried is stored once.
 */
export async function createHttpCallbackConnector(options: HttpCallbackOptions): Promise<HttpCallbackConnector> {
  const secret = parseSecret(options.secret);
  const log = options.log ?? silentLogger;
  const subjects: Subjects = createSubjects(options.prefix);
  const maxBody = options.maxBodyBytes ?? 512 * 1024;
  const publishTimeoutMs = options.publishTimeoutMs ?? 5_000;
  const defaultExpiry = options.defaultExpiresInMs ?? 7 * 86_400_000;
  const providers = options.providers ?? {};
  const own = !options.nc;
  const nc = options.nc ?? (await connectNats(options.servers, { name: "flowmetal-http-callback", reconnectForever: true }));
  const js: JetStreamClient = jetstream(nc);
  const app = fastify({ bodyLimit: maxBody, logger: false, routerOptions: { maxParamLength: 2048 } });
  let publicUrl = options.publicUrl?.replace(/\/+$/, "");

  async function persist(actor: string, event: Record<string, unknown>, msgId: string): Promise<{ seq: number; duplicate: boolean }> {
    const a = parseActorAddress(actor);
    const h = natsHeaders();
    h.set(Header.ContentType, ContentType.Json);
    try {
      const ack = await js.publish(subjects.inbox(a), encodePayload(event, "json"), { msgID: msgId, headers: h, timeout: publishTimeoutMs });
      return { seq: ack.seq, duplicate: ack.duplicate };
    } catch (err) {
      log.warn({ actor, err: String((err as Error).message) }, "delivery not persisted");
      throw fail(503, ErrorCode.Unavailable, "the delivery could not be persisted; retry later", { "retry-after": "5" });
    }
  }

  app.removeAllContentTypeParsers();
  app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
  app.setErrorHandler((err: unknown, _req, reply: FastifyReply) => {
    if (err instanceof HttpError) {
      void reply.code(err.status).headers(err.extraHeaders).send({ error: err.error.toWire() });
      return;
    }
    const e = err as { statusCode?: number; code?: string; message?: string };
    if (e.code === "FST_ERR_CTP_BODY_TOO_LARGE" || e.statusCode === 413) {
      void reply.code(413).send({ error: new FlowmetalError(ErrorCode.PayloadTooLarge, `body is over the ${maxBody}-byte limit`).toWire() });
      return;
    }
    if (e.statusCode && e.statusCode >= 400 && e.statusCode < 500) {
      void reply.code(e.statusCode).send({ error: new FlowmetalError(ErrorCode.BadRequest, e.message ?? "bad request").toWire() });
      return;
    }
    log.error({ err: String((err as Error)?.stack ?? err) }, "callback request failed");
    void reply.code(500).send({ error: toWireError(err) });
  });
  // Refuse a declared oversize body before reading any of it.
  app.addHook("onRequest", async (req) => {
    const len = Number(req.headers["content-length"]);
    if (Number.isFinite(len) && len > maxBody) throw fail(413, ErrorCode.PayloadTooLarge, `body is ${len} bytes, over the ${maxBody}-byte limit`);
  });

  app.get("/healthz", async () => ({ ok: true }));

  app.post<{ Params: { token: string } }>("/cb/:token", async (req, reply) => {
    let claims;
    try {
      claims = verifyToken(secret, req.params.token);
    } catch (err) {
      if (FlowmetalError.is(err, ErrorCode.Expired)) throw new HttpError(410, err);
      throw new HttpError(404, new FlowmetalError(ErrorCode.Unauthorized, "unknown or invalid callback token"));
    }
    const raw = (req.body as Buffer | undefined) ?? Buffer.alloc(0);
    const program = claims.actor.split("/")[0]!;
    const provider = providers[program];
    if (provider) {
      try {
        verifySignature(provider, req.headers, raw);
      } catch (err) {
        throw new HttpError(401, FlowmetalError.is(err) ? err : new FlowmetalError(ErrorCode.Unauthorized, "bad signature"));
      }
    }
    const body = bodyOf(raw, req.headers["content-type"]);
    const digest = createHash("sha256").update(raw).digest("base64url").slice(0, 32);
    const event = { type: claims.event, callbackId: claims.callbackId, body, contentType: req.headers["content-type"] ?? null };
    const r = await persist(claims.actor, event, `cb.${claims.callbackId}.${digest}`);
    options.afterPersist?.();
    log.info({ actor: claims.actor, callbackId: claims.callbackId, seq: r.seq, duplicate: r.duplicate }, "callback persisted");
    return reply.code(202).send({ accepted: true, duplicate: r.duplicate });
  });
  app.route({
    method: ["GET", "PUT", "PATCH", "DELETE", "OPTIONS"],
    url: "/cb/:token",
    handler: async (_req, reply) => reply.code(405).header("allow", "POST").send({ error: new FlowmetalError(ErrorCode.BadRequest, "callbacks take POST only").toWire() }),
  });

  app.post<{ Params: { program: string; key: string } }>("/ingress/:program/:key", async (req, reply) => {
    if (!options.ingressToken) throw fail(404, ErrorCode.BadRequest, "ingress is not enabled on this connector");
    const auth = req.headers.authorization ?? "";
    if (!auth.startsWith("Bearer ") || !sameSecret(auth.slice(7), options.ingressToken)) {
      throw fail(401, ErrorCode.Unauthorized, "missing or wrong bearer token");
    }
    let program: string;
    let key: string;
    try {
      program = parseProgramName(req.params.program);
      key = parseActorKey(req.params.key);
    } catch (err) {
      throw new HttpError(400, err as FlowmetalError);
    }
    const raw = (req.body as Buffer | undefined) ?? Buffer.alloc(0);
    let event;
    try {
      event = parseEvent(bodyOf(raw, req.headers["content-type"]));
    } catch (err) {
      if (err instanceof HttpError) throw err;
      throw new HttpError(400, err as FlowmetalError);
    }
    const idem = req.headers["idempotency-key"];
    const msgId = typeof idem === "string" && /^[\x21-\x7e]{1,128}$/.test(idem) ? `ingress.${idem}` : `ingress.${createHash("sha256").update(raw).update(`${program}/${key}`).digest("base64url")}`;
    const r = await persist(`${program}/${key}`, event, msgId);
    return reply.code(202).send({ actor: `${program}/${key}`, seq: r.seq, duplicate: r.duplicate });
  });

  const address = await app.listen({ host: options.host ?? "127.0.0.1", port: options.port ?? 8788 });
  publicUrl ??= address;

  let worker: FunctionWorker;
  try {
    worker = await createFunctionWorker(
      { nc, js, jsm: await jetstreamManager(nc), subjects, log },
      [
        {
          name: callbackFunction,
          retry: resolveRetryPolicy({ maxAttempts: 3 }),
          timeoutMs: 10_000,
          impl: (input, ctx) => {
            const i = (input ?? {}) as { event?: unknown; expiresInMs?: unknown; id?: unknown };
            const type = parseEvent({ type: i.event }).type;
            const expiresInMs = typeof i.expiresInMs === "number" && i.expiresInMs > 0 ? i.expiresInMs : defaultExpiry;
            const callbackId = typeof i.id === "string" && i.id.length > 0 && i.id.length <= 128 ? i.id : ctx.callId;
            const expiresAt = Date.now() + expiresInMs;
            const token = mintToken(secret, { actor: ctx.actor, callbackId, event: type, expiresAt });
            return { url: `${publicUrl}/cb/${token}`, callbackId, expiresAt };
          },
        },
      ],
    );
  } catch (err) {
    await app.close();
    if (own) await nc.close();
    throw err;
  }
  log.info({ url: address, publicUrl }, "http callback connector listening");

  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let stopping: Promise<void> | undefined;
  const stop = (how: "drain" | "close") =>
    (stopping ??= (async () => {
      await app.close();
      await worker[how]();
      if (own) await nc.drain().catch(() => undefined);
      resolveClosed();
    })());
  return {
    url: address,
    server: app,
    drain: () => stop("drain"),
    close: () => stop("close"),
    closed,
    [Symbol.asyncDispose]: () => stop("drain"),
  };
}
