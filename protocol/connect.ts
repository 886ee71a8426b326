// protocol/connect.ts — one way to reach NATS from every process: server lists and credentials in URLs, errors with a code.
import { connect, type ConnectionOptions, type NatsConnection } from "@nats-io/transport-node";
import { ErrorCode, FlowmetalError } from "./errors.js";
import { retryWithBackoff } from "./retry.js";

export const defaultServers = "nats://127.0.0.1:4222";

/**
 * Splits `"nats://user:pass@a:4222,nats://b:4222"` (or an array of such) into server URLs without
 * credentials plus the credentials: `user:pass@` is a user and password, a lone `token@` is a token.
 * The NATS client itself takes neither comma lists nor credentials inside URLs.
 */
export function serverOptions(servers: string | readonly string[] = defaultServers): Pick<ConnectionOptions, "servers" | "user" | "pass" | "token"> {
  const list = (typeof servers === "string" ? servers.split(",") : servers.flatMap((s) => s.split(","))).map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new FlowmetalError(ErrorCode.BadRequest, "no NATS server URL given");
  const out: Pick<ConnectionOptions, "servers" | "user" | "pass" | "token"> = {};
  const clean: string[] = [];
  for (const raw of list) {
    const withScheme = raw.includes("://") ? raw : `nats://${raw}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new FlowmetalError(ErrorCode.BadRequest, `'${raw.replace(/\/\/[^@/]*@/, "//***@")}' is not a NATS server URL (nats://host:port)`);
    }
    if (u.username && out.user === undefined && out.token === undefined) {
      if (u.password) {
        out.user = decodeURIComponent(u.username);
        out.pass = decodeURIComponent(u.password);
      } else out.token = decodeURIComponent(u.username);
    }
    u.username = "";
    u.password = "";
    clean.push(`${u.protocol}//${u.host}`);
  }
  out.servers = clean;
  return out;
}

/** Connects, turning failures into `FM_ERR_UNAVAILABLE` that names the servers (never the credentials). */
export async function connectNats(
  servers: string | readonly string[] | undefined,
  options: { name: string; reconnectForever?: boolean },
): Promise<NatsConnection> {
  const so = serverOptions(servers);
  try {
    // noAsyncTraces: otherwise every request (each JetStream publish) captures two stack traces up front, which
    // measured as a fifth of a node's CPU under load.
    return await connect({ ...so, name: options.name, noAsyncTraces: true, ...(options.reconnectForever ? { maxReconnectAttempts: -1 } : {}) });
  } catch (err) {
    throw new FlowmetalError(ErrorCode.Unavailable, `cannot connect to NATS at ${(so.servers as string[]).join(",")}: ${(err as Error).message}`, { cause: err });
  }
}

/** True for errors that mean "JetStream is not ready yet" (no leader, a timeout) rather than "no". */
export function isTransient(err: unknown): boolean {
  return /timeout|timed out|no responders|503|no suitable peers|leader|not available|insufficient resources|cluster/i.test(String((err as Error)?.message ?? err));
}

/**
 * Retries `fn` while it fails transiently (a cluster still electing leaders when everything starts together),
 * up to `timeoutMs`; other errors, and the last transient one, are thrown. `stop` ends the retries at the
 * next failure; `onRetry` is told of each failure that will be retried.
 */
export async function whenAvailable<T>(
  fn: () => Promise<T>,
  timeoutMs = 30_000,
  more: { stop?: () => boolean; onRetry?: (err: unknown, retryInMs: number) => void } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  return retryWithBackoff(fn, {
    firstDelayMs: 100,
    giveUp: (err, delay) => more.stop?.() === true || !isTransient(err) || Date.now() + delay > deadline,
    ...(more.onRetry ? { onRetry: more.onRetry } : {}),
  });
}
