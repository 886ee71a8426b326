// connectors/http-request/index.ts — the HTTP request connector: serves the function `http.request` to programs through the worker protocol (PROTOCOL.md §5).
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../../protocol/connect.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import { silentLogger, type Logger } from "../../protocol/logger.js";
import { resolveRetryPolicy, type RetryPolicy } from "../../protocol/retry.js";
import { createSubjects } from "../../protocol/subjects.js";
import { createFunctionWorker, type FunctionHandler } from "../../protocol/worker.js";
import { performHttpRequest, type RequestSettings } from "./request.js";
import { resolveSsrfPolicy, type HostLookup } from "./ssrf.js";

export { parseRetryAfter, type HttpRequestInput, type HttpResponse } from "./request.js";
export {
  classifyAddress,
  describeVerdict,
  isPublicAddress,
  resolveSsrfPolicy,
  vetUrl,
  type AddressClass,
  type AddressVerdict,
  type Embedding,
  type HostLookup,
  type LookupAddress,
  type SsrfOptions,
  type SsrfPolicy,
  type VettedTarget,
} from "./ssrf.js";

/** The function name programs invoke (`functionRef("http.request")`). */
export const httpRequestFunction = "http.request";

/** What shapes the requests the connector makes, and nothing about where it gets calls from. */
export interface HttpRequestHandlerOptions {
  /**
   * Destinations opened despite SSRF protection: `"host"`, `"host:port"`, `"[::1]:8080"` or a CIDR range
   * of resolved addresses (`"10.1.0.0/16"`). Everything else must resolve to public addresses only.
   * @default []
   */
  allow?: readonly string[];
  /** DNS resolution; every address it returns is vetted. @default the system resolver (`dns.lookup`, all addresses) */
  lookup?: HostLookup;
  /** Largest response body read, and the most a call's `maxResponseBytes` may ask for. @default 1048576 (1 MiB) */
  maxResponseBytes?: number;
  /** Time limit of one attempt when the input gives no `timeoutMs`. Keep it below the call's `timeoutMs` so a slow attempt is retried rather than ending the call. @default 10000 */
  defaultTimeoutMs?: number;
  /** Redirects followed per attempt, each one vetted. @default 5 */
  maxRedirects?: number;
  /** A `Retry-After` asking for longer is cut to this. @default 300000 (5 min) */
  maxRetryAfterMs?: number;
  /** Largest result (the JSON-encoded `{ callId, output }`) sent back; it must fit the actor's inbox limit and NATS max_payload. @default 1000000 */
  maxResultBytes?: number;
  /** `User-Agent` sent unless the input gives one. @default "flowmetal-http-request" */
  userAgent?: string;
  /** Retry policy used when a call message carries none (calls from Flowmetal programs always do). @default 5 attempts, 500 ms initial backoff */
  retry?: Partial<RetryPolicy>;
  /** Time limit of a call when its message carries none; the consumer's ack_wait is this plus 30 s. @default 30000 */
  timeoutMs?: number;
}

/** Options of {@link createHttpRequestConnector}. */
export interface HttpRequestConnectorOptions extends HttpRequestHandlerOptions {
  /** NATS server URL(s); ignored when `nc` is given. @default "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** An open connection to use; the connector then does not close it. */
  nc?: NatsConnection;
  /** Subject prefix of the Flowmetal deployment. @default "fm" */
  prefix?: string;
  /** Calls run at once by this process. @default 64 */
  concurrency?: number;
  log?: Logger;
}

/** A running HTTP request connector. */
export interface HttpRequestConnector extends AsyncDisposable {
  /** Stops taking calls, lets running requests finish, then closes its NATS connection (if it opened it). */
  drain(): Promise<void>;
  /** Stops at once: running requests are aborted and their calls redelivered to another worker. */
  close(): Promise<void>;
  /** Resolves when the connector has stopped; never rejects. */
  readonly closed: Promise<void>;
}

function positive(v: number | undefined, name: string, fallback: number, min = 1): number {
  if (v === undefined) return fallback;
  if (!Number.isSafeInteger(v) || v < min) throw new FlowmetalError(ErrorCode.BadRequest, `http-request connector: ${name} must be an integer of at least ${min}, got ${v}`);
  return v;
}

/** Checks the options, fills defaults and builds the `http.request` handler for {@link createFunctionWorker}. */
export function createHttpRequestHandler(options: HttpRequestHandlerOptions = {}): FunctionHandler {
  const settings: RequestSettings = Object.freeze({
    policy: resolveSsrfPolicy({ ...(options.allow ? { allow: options.allow } : {}), ...(options.lookup ? { lookup: options.lookup } : {}) }),
    maxResponseBytes: positive(options.maxResponseBytes, "maxResponseBytes", 1024 * 1024),
    defaultTimeoutMs: positive(options.defaultTimeoutMs, "defaultTimeoutMs", 10_000),
    maxRedirects: positive(options.maxRedirects, "maxRedirects", 5, 0),
    maxRetryAfterMs: positive(options.maxRetryAfterMs, "maxRetryAfterMs", 300_000, 0),
    maxResultBytes: positive(options.maxResultBytes, "maxResultBytes", 1_000_000),
    userAgent: options.userAgent ?? "flowmetal-http-request",
  });
  return Object.freeze({
    name: httpRequestFunction,
    retry: resolveRetryPolicy({ maxAttempts: 5, initialBackoffMs: 500, ...options.retry }),
    timeoutMs: positive(options.timeoutMs, "timeoutMs", 30_000),
    impl: (input: unknown, ctx: { signal: AbortSignal; callId: string }) => performHttpRequest(input, ctx, settings),
  });
}

/**
 * Starts the HTTP request connector: a worker for the function `http.request`. Programs call it with
 * `functionRef("http.request")` (or `httpRequest` from "flowmetal") and get `{ status, headers, body }`,
 * or an `xstate.error.actor` event. SSRF protection is on: only public addresses are reached unless
 * `allow` opens a destination. Any number of connector processes may run; each call goes to one of them.
 *
 * Needs the Flowmetal streams to exist (a node has run once); rejects with `FM_ERR_UNAVAILABLE` otherwise.
 *
 * @example
 * await using http = await createHttpRequestConnector({ servers: "nats://127.0.0.1:4222", allow: ["127.0.0.1:8080"] });
 */
export async function createHttpRequestConnector(options: HttpRequestConnectorOptions = {}): Promise<HttpRequestConnector> {
  const handler = createHttpRequestHandler(options);
  const concurrency = positive(options.concurrency, "concurrency", 64);
  const log = (options.log ?? silentLogger).child({ connector: "http-request" });
  const ownConnection = options.nc === undefined;
  const nc: NatsConnection = options.nc ?? (await connectNats(options.servers, { name: "flowmetal-http-request", reconnectForever: true }));
  const subjects = createSubjects(options.prefix);
  const closeOwn = async () => {
    if (ownConnection) await nc.drain().catch(() => undefined);
  };
  try {
    const jsm = await jetstreamManager(nc);
    try {
      await jsm.streams.info(subjects.streams.calls);
    } catch (err) {
      throw new FlowmetalError(ErrorCode.Unavailable, `stream ${subjects.streams.calls} does not exist yet: start a Flowmetal node first`, { cause: err });
    }
    const worker = await createFunctionWorker({ nc, js: jetstream(nc), jsm, subjects, log }, [handler], { concurrency });
    log.info({ fn: httpRequestFunction }, "connector serving");
    let stopping: Promise<void> | undefined;
    const stop = (how: "drain" | "close") =>
      (stopping ??= (async () => {
        await worker[how]();
        await closeOwn();
      })());
    const closed = (async () => {
      await worker.closed;
      await stopping;
    })();
    return {
      drain: () => stop("drain"),
      close: () => stop("close"),
      closed,
      [Symbol.asyncDispose]: () => stop("drain"),
    };
  } catch (err) {
    await closeOwn();
    throw err;
  }
}
