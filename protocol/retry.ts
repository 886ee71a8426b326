// protocol/retry.ts — retry policies of function calls and the backoff every worker computes from them.
import { ErrorCode, FlowmetalError } from "./errors.js";

/** How a function call is retried. Durations in milliseconds. */
export interface RetryPolicy {
  /** Attempts in all, the first included. @default 3 */
  readonly maxAttempts: number;
  /** Delay before the second attempt. @default 200 */
  readonly initialBackoffMs: number;
  /** Each further delay is multiplied by this. @default 2 */
  readonly multiplier: number;
  /** Upper bound for one delay. @default 30000 */
  readonly maxBackoffMs: number;
}

/** Fills and checks a retry policy; throws `FM_ERR_INVALID_MODULE` naming the bad field. */
export function resolveRetryPolicy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  const r: RetryPolicy = {
    maxAttempts: p.maxAttempts ?? 3,
    initialBackoffMs: p.initialBackoffMs ?? 200,
    multiplier: p.multiplier ?? 2,
    maxBackoffMs: p.maxBackoffMs ?? 30_000,
  };
  const bad = (field: string) => new FlowmetalError(ErrorCode.InvalidModule, `retry.${field} must be a positive number`);
  if (!Number.isInteger(r.maxAttempts) || r.maxAttempts < 1) throw bad("maxAttempts (integer)");
  if (!(r.initialBackoffMs >= 0)) throw bad("initialBackoffMs");
  if (!(r.multiplier >= 1)) throw bad("multiplier (at least 1)");
  if (!(r.maxBackoffMs >= r.initialBackoffMs)) throw bad("maxBackoffMs (at least initialBackoffMs)");
  return Object.freeze(r);
}

/** Delay before attempt `attempt + 1` (attempt counts from 1), with ±20% jitter. */
export function backoffMs(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  const base = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * policy.multiplier ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + 0.4 * random()));
}

/** How {@link retryWithBackoff} waits and when it stops. */
export interface BackoffLoop {
  /** First wait after a failure; each further one doubles, up to `maxDelayMs`. */
  firstDelayMs: number;
  /** @default 2000 */
  maxDelayMs?: number;
  /** Asked after each failure, with the wait that would come next: true throws the error at once. */
  giveUp(err: unknown, nextDelayMs: number): boolean;
  /** Asked after each wait, before the next attempt: true throws the last error instead. */
  stopped?(): boolean;
  /** Told of each failure that will be retried (for the log). */
  onRetry?(err: unknown, delayMs: number): void;
}

/**
 * Runs `fn` until it succeeds, waiting between attempts with doubling delays: the one retry loop of
 * the node's step path, its shard consumers, function workers and JetStream start-up.
 */
export async function retryWithBackoff<T>(fn: () => Promise<T>, loop: BackoffLoop): Promise<T> {
  let delay = loop.firstDelayMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (loop.giveUp(err, delay)) throw err;
      loop.onRetry?.(err, delay);
      await new Promise((r) => setTimeout(r, delay));
      if (loop.stopped?.()) throw err;
      delay = Math.min(delay * 2, loop.maxDelayMs ?? 2000);
    }
  }
}
