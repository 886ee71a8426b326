// connectors/http-request/request.ts — one attempt of an http.request call: input checks, pinned connections, vetted redirects, size and time caps, HTTP outcome → result or error.
import type { LookupFunction } from "node:net";
import { Client, type Dispatcher } from "undici";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import type { HttpRequestInput, HttpResponse } from "../../protocol/records.js";
import { safeUrl, vetUrl, type SsrfPolicy, type VettedTarget } from "./ssrf.js";

export type { HttpRequestInput, HttpResponse };

/** Limits and defaults of the connector that shape each request. */
export interface RequestSettings {
  readonly policy: SsrfPolicy;
  readonly maxResponseBytes: number;
  readonly defaultTimeoutMs: number;
  readonly maxRedirects: number;
  readonly maxRetryAfterMs: number;
  readonly maxResultBytes: number;
  readonly userAgent: string;
}

interface ParsedInput {
  readonly url: URL;
  readonly method: string;
  readonly headers: Record<string, string>;
  readonly body: string | undefined;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
}

const methods: ReadonlySet<string> = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Framing and connection headers are the client's business; letting a program set them invites request smuggling.
const reservedHeaders: ReadonlySet<string> = new Set([
  "host", "connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te", "trailer", "expect", "proxy-connection",
]);
const redirectStatuses: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);
/** A result is nested 3 levels deeper than the body: `{ callId, output: { body } }`; the node accepts depth 64. */
const maxBodyDepth = 60;
/** Error details carry at most this much of the body. */
const maxDetailBodyChars = 64 * 1024;

function badInput(message: string, cause?: unknown): FlowmetalError {
  return new FlowmetalError(ErrorCode.BadRequest, `http.request: ${message}`, { retryable: false, cause });
}

function positiveInt(v: unknown, field: string): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) throw badInput(`${field} must be a positive integer, got ${JSON.stringify(v)}`);
  return v;
}

/** Checks the input of one call; throws `FM_ERR_BAD_REQUEST` (terminal) saying what is wrong. */
export function parseHttpRequestInput(input: unknown, settings: RequestSettings): ParsedInput {
  if (typeof input !== "object" || input === null || Array.isArray(input)) throw badInput("input must be an object like { url, method, headers, body }");
  const i = input as Record<string, unknown>;
  if (typeof i.url !== "string" || i.url.length === 0) throw badInput("input.url must be a non-empty string");
  if (i.url.length > 16_384) throw badInput(`input.url is ${i.url.length} characters long, more than 16384`);
  let url: URL;
  try {
    url = new URL(i.url);
  } catch (err) {
    throw badInput(`input.url '${i.url.slice(0, 200)}' is not an absolute URL`, err);
  }
  if (url.username || url.password) throw badInput("input.url must not carry credentials: send them in an Authorization header");
  const method = i.method === undefined || i.method === null ? "GET" : typeof i.method === "string" ? i.method.toUpperCase() : "";
  if (!methods.has(method)) throw badInput(`method ${JSON.stringify(i.method)} is not one of ${[...methods].join(", ")}`);
  const headers: Record<string, string> = {};
  if (i.headers !== undefined && i.headers !== null) {
    if (typeof i.headers !== "object" || Array.isArray(i.headers)) throw badInput("input.headers must be an object of header name → string");
    for (const [name, value] of Object.entries(i.headers)) {
      const lower = name.toLowerCase();
      if (!headerName.test(name)) throw badInput(`header name ${JSON.stringify(name)} is not a valid token`);
      if (reservedHeaders.has(lower)) throw badInput(`header '${name}' is set by the connector and cannot be given`);
      if (typeof value !== "string" && typeof value !== "number") throw badInput(`header '${name}' must be a string`);
      const text = String(value);
      if (/[\r\n\0]/.test(text)) throw badInput(`header '${name}' contains a line break or NUL`);
      headers[lower] = text;
    }
  }
  let body: string | undefined;
  if (i.body !== undefined && i.body !== null) {
    if (method === "GET" || method === "HEAD") throw badInput(`a ${method} request cannot have a body`);
    if (typeof i.body === "string") {
      body = i.body;
      headers["content-type"] ??= "text/plain; charset=utf-8";
    } else {
      body = JSON.stringify(i.body);
      headers["content-type"] ??= "application/json";
    }
  }
  const timeoutMs = positiveInt(i.timeoutMs, "input.timeoutMs") ?? settings.defaultTimeoutMs;
  const maxResponseBytes = positiveInt(i.maxResponseBytes, "input.maxResponseBytes") ?? settings.maxResponseBytes;
  if (maxResponseBytes > settings.maxResponseBytes) {
    throw badInput(`input.maxResponseBytes ${maxResponseBytes} is above this connector's limit of ${settings.maxResponseBytes}`);
  }
  return { url, method, headers, body, timeoutMs, maxResponseBytes };
}

/** Milliseconds a `Retry-After` value (delay-seconds or an HTTP-date) asks to wait, or undefined when absent or unreadable. */
export function parseRetryAfter(value: string | undefined, now: number = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function pinnedLookup(target: VettedTarget): LookupFunction {
  // net.connect asks for every address when it races families (autoSelectFamily): answer with the vetted one only.
  return (_hostname, options, callback) => {
    if (options.all) callback(null, [{ address: target.address, family: target.family }]);
    else callback(null, target.address, target.family);
  };
}

function flattenHeaders(raw: Record<string, string | string[] | undefined>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (v === undefined) continue;
    out[k.toLowerCase()] = Array.isArray(v) ? v.join(", ") : v;
  }
  return out;
}

function isJsonType(contentType: string | undefined): boolean {
  const media = (contentType ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
  return media === "application/json" || media.endsWith("+json");
}

function decodeText(bytes: Uint8Array, contentType: string | undefined): string {
  const charset = /charset\s*=\s*"?([\w.:-]+)"?/i.exec(contentType ?? "")?.[1];
  try {
    return new TextDecoder(charset ?? "utf-8").decode(bytes);
  } catch {
    return new TextDecoder("utf-8").decode(bytes);
  }
}

function depthOf(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, d] = stack.pop() ?? [null, 0];
    if (typeof v !== "object" || v === null) continue;
    const depth = d + 1;
    if (depth > max) max = depth;
    if (max > maxBodyDepth) return max;
    for (const child of Object.values(v)) stack.push([child, depth]);
  }
  return max;
}

function decodeBody(bytes: Uint8Array, contentType: string | undefined, what: string): unknown {
  const text = decodeText(bytes, contentType);
  if (!isJsonType(contentType)) return text;
  if (text.trim() === "") return null;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return text;
  }
  if (depthOf(parsed) > maxBodyDepth) {
    throw new FlowmetalError(ErrorCode.PayloadTooDeep, `${what}: the JSON body nests deeper than ${maxBodyDepth} levels`, { retryable: false });
  }
  return parsed;
}

function detailBody(body: unknown): unknown {
  const text = typeof body === "string" ? body : JSON.stringify(body) ?? "";
  if (text.length <= maxDetailBodyChars) return body;
  return `${text.slice(0, maxDetailBodyChars)}… (truncated)`;
}

/** Drops a response body unread; undici reports the abort as an 'error' that nobody needs to hear. */
function discard(body: NodeJS.ReadableStream & { destroy(): unknown }): void {
  body.on("error", () => undefined);
  body.destroy();
}

interface Exchange {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly bytes: Uint8Array;
}

async function exchange(
  target: VettedTarget,
  req: { method: string; headers: Record<string, string>; body: string | undefined; maxResponseBytes: number; readBody: boolean },
  signal: AbortSignal,
  what: string,
): Promise<Exchange> {
  const client = new Client(target.url.origin, {
    connect: { lookup: pinnedLookup(target) },
    // Our own AbortSignal bounds the whole attempt; undici's 300 s defaults would only get in its way.
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  try {
    const res = await client.request({
      path: `${target.url.pathname}${target.url.search}`,
      method: req.method as Dispatcher.HttpMethod,
      headers: req.headers,
      body: req.body,
      signal,
    });
    const headers = flattenHeaders(res.headers);
    // A redirect's body is never looked at: do not spend the size budget on it.
    if (!req.readBody || (redirectStatuses.has(res.statusCode) && headers.location !== undefined)) {
      discard(res.body);
      return { status: res.statusCode, headers, bytes: new Uint8Array(0) };
    }
    const declared = Number(headers["content-length"]);
    const tooLarge = (seen: string) =>
      new FlowmetalError(ErrorCode.PayloadTooLarge, `${what}: the response body is larger than maxResponseBytes (${req.maxResponseBytes} bytes; ${seen})`, {
        retryable: false,
        details: { status: res.statusCode, headers, limit: req.maxResponseBytes },
      });
    if (Number.isFinite(declared) && declared > req.maxResponseBytes) {
      discard(res.body);
      throw tooLarge(`content-length says ${declared}`);
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of res.body) {
      const buf = chunk as Buffer;
      total += buf.length;
      if (total > req.maxResponseBytes) {
        discard(res.body);
        throw tooLarge(`stopped reading at ${total}`);
      }
      chunks.push(buf);
    }
    return { status: res.statusCode, headers, bytes: Buffer.concat(chunks, total) };
  } finally {
    await client.destroy().catch(() => undefined);
  }
}

function networkError(err: unknown, what: string): FlowmetalError {
  const e = err as { code?: unknown; message?: unknown; cause?: { code?: unknown; message?: unknown } } | null;
  const code = typeof e?.cause?.code === "string" ? e.cause.code : typeof e?.code === "string" ? e.code : "network";
  if (code === "UND_ERR_INVALID_ARG") {
    return new FlowmetalError(ErrorCode.BadRequest, `${what}: ${String(e?.message)}`, { cause: err, retryable: false });
  }
  const message = typeof e?.message === "string" && e.message ? e.message : String(err);
  // A certificate that does not verify will not verify on the next attempt either.
  if (/CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(code)) {
    return new FlowmetalError(ErrorCode.FunctionFailed, `${what} failed: ${message} (${code})`, { cause: err, retryable: false, details: { tls: code } });
  }
  return new FlowmetalError(ErrorCode.FunctionFailed, `${what} failed: ${message} (${code})`, { cause: err, retryable: true, details: { network: code } });
}

/**
 * Performs one attempt of an `http.request` call: vets and pins every hop (at most `maxRedirects`
 * redirects), sends `Idempotency-Key: <callId>`, and reads at most `maxResponseBytes`.
 *
 * Resolves with the response for 2xx and unfollowed 3xx. Throws a {@link FlowmetalError}: retryable for
 * network errors, the attempt's timeout (`FM_ERR_FUNCTION_TIMEOUT`), 408, 429 and 5xx (with
 * `details.retryAfterMs` from `Retry-After`); terminal for other 4xx (`details: { status, headers, body }`),
 * refused destinations, certificates that do not verify, too many redirects, and oversize bodies
 * (`FM_ERR_PAYLOAD_TOO_LARGE`).
 */
export async function performHttpRequest(input: unknown, ctx: { signal: AbortSignal; callId: string }, settings: RequestSettings): Promise<HttpResponse> {
  const req = parseHttpRequestInput(input, settings);
  const timer = new AbortController();
  const timeout = setTimeout(() => timer.abort(), req.timeoutMs);
  const signal = AbortSignal.any([ctx.signal, timer.signal]);
  let url = req.url;
  let method = req.method;
  let body = req.body;
  const headers: Record<string, string> = { "user-agent": settings.userAgent, "idempotency-key": ctx.callId, ...req.headers };
  let what = `${method} ${safeUrl(url)}`;
  try {
    for (let hop = 0; ; hop++) {
      const target = await vetUrl(url, settings.policy);
      if (signal.aborted) throw signal.reason;
      let res: Exchange;
      try {
        res = await exchange(target, { method, headers, body, maxResponseBytes: req.maxResponseBytes, readBody: method !== "HEAD" }, signal, what);
      } catch (err) {
        if (FlowmetalError.is(err)) throw err;
        if (timer.signal.aborted || ctx.signal.aborted) throw err;
        throw networkError(err, what);
      }
      const location = res.headers.location;
      if (redirectStatuses.has(res.status) && location !== undefined) {
        if (hop >= settings.maxRedirects) {
          throw new FlowmetalError(ErrorCode.FunctionFailed, `${what}: more than ${settings.maxRedirects} redirects`, { retryable: false, details: { status: res.status, headers: res.headers } });
        }
        let next: URL;
        try {
          next = new URL(location, url);
        } catch (err) {
          throw new FlowmetalError(ErrorCode.FunctionFailed, `${what}: redirect to an invalid Location '${location.slice(0, 200)}'`, { cause: err, retryable: false, details: { status: res.status, headers: res.headers } });
        }
        if (res.status === 303 ? method !== "HEAD" : (res.status === 301 || res.status === 302) && method === "POST") {
          method = "GET";
          body = undefined;
          delete headers["content-type"];
        }
        // As browsers do: credentials are for the origin they were given to.
        if (next.origin !== url.origin) for (const h of ["authorization", "cookie", "proxy-authorization"]) delete headers[h];
        url = next;
        what = `${method} ${safeUrl(url)}`;
        continue;
      }
      const output: HttpResponse = { status: res.status, headers: res.headers, body: decodeBody(res.bytes, res.headers["content-type"], what) };
      if (res.status >= 400) throw httpError(output, what, settings);
      const size = Buffer.byteLength(JSON.stringify({ callId: ctx.callId, output }));
      if (size > settings.maxResultBytes) {
        throw new FlowmetalError(ErrorCode.PayloadTooLarge, `${what}: the response makes a ${size}-byte result, more than the ${settings.maxResultBytes} bytes a result may have; lower maxResponseBytes or fetch less`, {
          retryable: false,
          details: { status: res.status, headers: res.headers },
        });
      }
      return output;
    }
  } catch (err) {
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (timer.signal.aborted && !FlowmetalError.is(err)) {
      throw new FlowmetalError(ErrorCode.FunctionTimeout, `${what} took longer than ${req.timeoutMs} ms`, { cause: err, retryable: true, details: { timeoutMs: req.timeoutMs } });
    }
    throw err;
  } finally {
    clearTimeout(timeout);
  }
}

function httpError(res: HttpResponse, what: string, settings: RequestSettings): FlowmetalError {
  const details: Record<string, unknown> = { status: res.status, headers: res.headers, body: detailBody(res.body) };
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  if (retryable) {
    const after = parseRetryAfter(res.headers["retry-after"]);
    if (after !== undefined) details.retryAfterMs = Math.min(after, settings.maxRetryAfterMs);
  }
  return new FlowmetalError(ErrorCode.FunctionFailed, `${what} answered ${res.status}`, { retryable, details });
}
