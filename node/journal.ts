// node/journal.ts — the journal: fenced appends of step records, resume from the last one, paged history.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { Publisher } from "./publisher.js";
import { decodeRecord, encodeRecord } from "../protocol/codec.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import type { StepRecord } from "../protocol/records.js";
import { formatAddress, type ActorAddress, type Subjects } from "../protocol/subjects.js";

export function stepMsgId(a: ActorAddress, step: number): string {
  return `log.${a.program}.${a.key}.${step}`;
}

function isWrongLastSequence(err: unknown): boolean {
  return /wrong last sequence/i.test(String((err as Error)?.message ?? err));
}

/**
 * Appends step `rec.step` after the record at stream sequence `prevSeq` (0 for an actor's first step).
 * JetStream rejects the append unless `prevSeq` is still the actor's last record, so a writer that lost
 * ownership gets `FM_ERR_STALE_OWNER` instead of forking the history.
 * @returns the stream sequence of the new record.
 */
export async function appendStep(
  js: Publisher,
  jsm: JetStreamManager,
  subjects: Subjects,
  a: ActorAddress,
  rec: StepRecord,
  prevSeq: number,
  timeoutMs = 10_000,
): Promise<number> {
  let ack;
  try {
    ack = await js.publish(subjects.journal(a), encodeRecord(rec), {
      msgID: stepMsgId(a, rec.step),
      expect: { lastSubjectSequence: prevSeq },
      timeout: timeoutMs,
    });
  } catch (err) {
    if (isWrongLastSequence(err)) {
      throw new FlowmetalError(ErrorCode.StaleOwner, `step ${rec.step} of ${formatAddress(a)} was fenced off: another writer appended first`, { cause: err });
    }
    throw new FlowmetalError(ErrorCode.Unavailable, `journal append for ${formatAddress(a)} failed: ${(err as Error).message}`, { cause: err });
  }
  if (ack.duplicate) {
    // The same step id was stored before: ours (a retried append) or another writer's. Only ours counts.
    const stored = await jsm.streams.getMessage(subjects.streams.journal, { seq: ack.seq });
    const other = stored ? (decodeRecord(stored.data) as StepRecord) : undefined;
    if (!other || other.seq !== rec.seq || other.node !== rec.node || other.epoch !== rec.epoch) {
      throw new FlowmetalError(ErrorCode.StaleOwner, `step ${rec.step} of ${formatAddress(a)} was already written by another writer`);
    }
  }
  return ack.seq;
}

/** The last record of an actor and its stream sequence, or undefined for an actor with no steps. One read. */
export async function readLast(jsm: JetStreamManager, subjects: Subjects, a: ActorAddress): Promise<{ record: StepRecord; seq: number } | undefined> {
  const m = await jsm.direct.getMessage(subjects.streams.journal, { last_by_subj: subjects.journal(a) });
  if (!m) return undefined;
  return { record: decodeRecord(m.data) as StepRecord, seq: m.seq };
}

/**
 * Reads an actor's records in order, starting after stream sequence `after` (0 = from the start).
 * @returns up to `limit` records with their stream sequences.
 */
export async function readRecords(
  jsm: JetStreamManager,
  subjects: Subjects,
  a: ActorAddress,
  after: number,
  limit: number,
): Promise<{ record: StepRecord; seq: number }[]> {
  const out: { record: StepRecord; seq: number }[] = [];
  try {
    const it = await jsm.direct.getBatch(subjects.streams.journal, { seq: after + 1, next_by_subj: subjects.journal(a), batch: limit });
    for await (const m of it) {
      out.push({ record: decodeRecord(m.data) as StepRecord, seq: m.seq });
    }
  } catch (err) {
    // Past the last record the server answers "no message found": that is an empty page.
    if (!isNotFound(err)) throw err;
  }
  return out;
}

function isNotFound(err: unknown): boolean {
  return /not found|no message/i.test(String((err as Error)?.message ?? err));
}

/**
 * Finds the record whose `field` (step or inbox sequence, both grow along the journal) equals `value`, by
 * binary search over the actor's journal: O(log n) direct reads however long the history.
 */
export async function findRecord(
  jsm: JetStreamManager,
  subjects: Subjects,
  a: ActorAddress,
  field: "step" | "seq",
  value: number,
): Promise<StepRecord | undefined> {
  const last = await readLast(jsm, subjects, a);
  if (!last || last.record[field] < value) return undefined;
  if (last.record[field] === value) return last.record;
  // Invariant: the wanted record, if any, has a stream sequence in [lo, hi].
  let lo = 1;
  let hi = last.seq;
  while (lo <= hi) {
    const mid = Math.floor((lo + hi) / 2);
    // The first record of this actor at or after stream sequence `mid`.
    const [r] = await readRecords(jsm, subjects, a, mid - 1, 1);
    if (!r || r.seq > hi) {
      hi = mid - 1;
      continue;
    }
    if (r.record[field] === value) return r.record;
    if (r.record[field] < value) lo = r.seq + 1;
    else hi = mid - 1;
  }
  return undefined;
}

/** The step that consumed inbox sequence `inboxSeq`. */
export function findStepByInboxSeq(jsm: JetStreamManager, subjects: Subjects, a: ActorAddress, inboxSeq: number): Promise<StepRecord | undefined> {
  return findRecord(jsm, subjects, a, "seq", inboxSeq);
}

/** Every record of an actor, page by page. */
export async function* readAll(jsm: JetStreamManager, subjects: Subjects, a: ActorAddress, pageSize = 256): AsyncGenerator<{ record: StepRecord; seq: number }> {
  let after = 0;
  for (;;) {
    const page = await readRecords(jsm, subjects, a, after, pageSize);
    for (const r of page) yield r;
    if (page.length < pageSize) return;
    after = page[page.length - 1]!.seq;
  }
}
