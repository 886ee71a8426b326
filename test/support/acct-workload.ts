// test/support/acct-workload.ts — drives the `acct` fixture for crash tests: sends ADD events until acknowledged and knows the expected end state.
import type { Client } from "../../node/client/index.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import type { StepRecord } from "../../protocol/records.js";
import { recordEvery, type AcctContext } from "../fixtures/crash-programs.js";

export interface AcctWorkload {
  /** Account keys; each has the actors `acct/<key>` and `audit/<key>`. */
  readonly keys: readonly string[];
  /** Ids of the ADD events acknowledged (durably accepted), per `acct/<key>`. */
  readonly acked: Map<string, string[]>;
  /** Sum of the acknowledged ADDs' n, per `acct/<key>`. */
  readonly totals: Map<string, number>;
  /** Sends retried because no node answered or the answer timed out. */
  retries: number;
}

export function createAcctWorkload(count: number, prefix = "k"): AcctWorkload {
  const keys = Array.from({ length: count }, (_, i) => `${prefix}${String(i).padStart(3, "0")}`);
  return { keys, acked: new Map(keys.map((k) => [`acct/${k}`, []])), totals: new Map(keys.map((k) => [`acct/${k}`, 0])), retries: 0 };
}

/** Every actor the workload touches, for reading journals. */
export function workloadActors(w: AcctWorkload): string[] {
  return w.keys.flatMap((k) => [`acct/${k}`, `audit/${k}`]);
}

/**
 * Sends until acknowledged: a node that is down answers FM_ERR_UNAVAILABLE (no responders) and one that
 * died mid-request FM_ERR_TIMEOUT; both are retried with the same msgId, so the event is stored once.
 */
export async function sendUntilAcked(fm: Client, w: AcctWorkload, actor: string, event: { type: string; [k: string]: unknown }, msgId: string, deadlineMs = 120_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    try {
      await fm.send(actor, event, { msgId });
      return;
    } catch (err) {
      const retry = FlowmetalError.is(err, ErrorCode.Unavailable) || FlowmetalError.is(err, ErrorCode.Timeout);
      if (!retry || Date.now() > deadline) throw err;
      w.retries++;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Sends `perActor` ADD events to every account (accounts in parallel, each in order). */
export async function sendRound(fm: Client, w: AcctWorkload, round: number, perActor: number): Promise<void> {
  await Promise.all(
    w.keys.map(async (key, ki) => {
      const actor = `acct/${key}`;
      for (let i = 0; i < perActor; i++) {
        const id = `${key}:r${round}:e${i}`;
        const n = ((round * 7 + i * 3 + ki) % 11) + 1;
        await sendUntilAcked(fm, w, actor, { type: "ADD", n, id }, id);
        w.acked.get(actor)!.push(id);
        w.totals.set(actor, w.totals.get(actor)! + n);
      }
    }),
  );
}

function contextOf<T>(rec: StepRecord | undefined): T | undefined {
  return (rec?.snapshot as { context?: T } | null | undefined)?.context;
}

/**
 * The end state every actor must reach once faults stop (I7): each account has applied all its
 * acknowledged ADDs and recorded every {@link recordEvery}th, and its audit has seen each one.
 * Returns why an actor is not there yet, or undefined.
 */
export function acctExpectation(w: AcctWorkload): (actor: string, last: StepRecord | undefined) => string | undefined {
  return (actor, last) => {
    const [program, key] = actor.split("/");
    const ids = w.acked.get(`acct/${key}`) ?? [];
    if (program === "audit") {
      const seen = contextOf<{ seen: string[] }>(last)?.seen.length ?? 0;
      return seen === ids.length ? undefined : `saw ${seen} of ${ids.length} events (step ${last?.step ?? 0})`;
    }
    const c = contextOf<AcctContext>(last);
    const want = { total: w.totals.get(actor) ?? 0, applied: ids.length, recorded: Math.floor(ids.length / recordEvery) };
    const got = { total: c?.total ?? 0, applied: c?.applied.length ?? 0, recorded: c?.recorded.length ?? 0 };
    if (got.total === want.total && got.applied === want.applied && got.recorded === want.recorded && c?.queue.length === 0) return undefined;
    return `has ${JSON.stringify(got)}, expected ${JSON.stringify(want)} (step ${last?.step ?? 0}, pending calls ${Object.keys(last?.calls ?? {}).length})`;
  };
}
