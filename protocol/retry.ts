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
