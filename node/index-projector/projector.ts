// node/index-projector/projector.ts — the projector: follows the journal through a shared durable consumer and keeps the actor index in KV.
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { decodeRecord } from "../../protocol/codec.js";
import { whenAvailable } from "../../protocol/connect.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import type { StepRecord } from "../../protocol/records.js";
import { createSubjects, type Subjects } from "../../protocol/subjects.js";
import { silentLogger, type Logger } from "../logger.js";
import { encodeEntry, entryOf, indexBucket, indexConsumer, indexKey, parseEntry, type IndexEntry } from "./entry.js";
import { readIndexLag, type IndexLag } from "./lag.js";

/** Options of {@link startProjector}. */
export interface ProjectorOptions {
  /** An open connection; the projector does not close it. */
  nc: NatsConnection;
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** Replicas of the index bucket when the projector creates it (3 in a cluster). @default 1 */
  replicas?: number;
  log?: Logger;
  /**
   * Records asked for per fetch. Records queue while a batch is written, and the next batch takes up to four
   * fetches' worth at once, coalesced per actor: the busier the journal, the fewer writes per record.
   * @default 1000
   */
  batchSize?: number;
  /** How long a record may stay unacknowledged before the server gives it to another projector. @default 30000 */
  ackWaitMs?: number;
  /** Index entries whose KV revision is remembered, to write without reading first. @default 200000 */
  cacheSize?: number;
  /** Told after each batch: records taken, index entries written, ms from the newest record's step to its write. */
  onBatch?: (records: number, written: number, delayMs: number) => void;
}

/** A running projector. Any number may run (one per node): each journal record is processed by one of them. */
export interface Projector extends AsyncDisposable {
  /** How far the index is behind the journal. */
  lag(): Promise<IndexLag>;
  /** Records processed and index entries written by this projector since it started. */
  readonly counts: { readonly records: number; readonly written: number };
  /** Finishes the batch in hand (its records are acknowledged), then stops. */
  drain(): Promise<void>;
  /** Same as drain: a batch is short. */
  close(): Promise<void>;
  /** Resolves when the projector has stopped; never rejects. */
  readonly closed: Promise<void>;
}

function isWrongLastSequence(err: unknown): boolean {
  return /wrong last sequence/i.test(String((err as Error)?.message ?? err));
}

/** Opens (creating if needed) the index bucket. */
export async function openIndexBucket(nc: NatsConnection, prefix = "fm", replicas = 1): Promise<KV> {
  const kvm = new Kvm(nc);
  const name = indexBucket(prefix);
  try {
    return await whenAvailable(() => kvm.create(name, { history: 1, replicas }));
  } catch (err) {
    if (/already in use|exists/i.test(String((err as Error).message))) return whenAvailable(() => kvm.open(name));
    throw new FlowmetalError(ErrorCode.Unavailable, `cannot open KV bucket ${name}: ${(err as Error).message}`, { cause: err });
  }
}

/** Creates the shared durable consumer if it does not exist; an existing one keeps its position. */
async function ensureConsumer(jsm: JetStreamManager, subjects: Subjects, ackWaitMs: number): Promise<void> {
  const stream = subjects.streams.journal;
  const config = {
    durable_name: indexConsumer,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    ack_wait: ackWaitMs * 1_000_000,
    max_ack_pending: 20_000,
    max_deliver: -1,
  };
  try {
    await whenAvailable(() => jsm.consumers.info(stream, indexConsumer));
    await jsm.consumers.update(stream, indexConsumer, { ack_wait: config.ack_wait, max_ack_pending: config.max_ack_pending }).catch(() => undefined);
  } catch (err) {
    if (!/not found/i.test(String((err as Error)?.message ?? err))) throw err;
    try {
      await whenAvailable(() => jsm.consumers.add(stream, config));
    } catch (e) {
      // Another node created it meanwhile.
      if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
    }
  }
}

/**
 * Starts a projector: a puller on the durable consumer `index` of the journal stream (delivering every
 * record from the first, acknowledged only after its index entry is written). Each record becomes
 * `{ program, key, value, status, step, updated }` under `<program>.<key>` in KV `<prefix>_index`, written
 * with compare-and-set and only when its step is newer than the entry's: replays, redeliveries and
 * projectors on other nodes never move an entry back. Under load, records queue while a batch is written
 * and are coalesced per actor, so the index keeps up with far more steps per second than KV writes.
 *
 * @example
 * const projector = await startProjector({ nc });
 * const { records } = await projector.lag();   // journal records not yet indexed
 */
export async function startProjector(options: ProjectorOptions): Promise<Projector> {
  const { nc } = options;
  const log = options.log ?? silentLogger;
  const subjects = createSubjects(options.prefix);
  const batchSize = options.batchSize ?? 1000;
  const cacheSize = options.cacheSize ?? 200_000;
  const ackWaitMs = options.ackWaitMs ?? 30_000;
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const kv = await openIndexBucket(nc, subjects.prefix, options.replicas ?? 1);
  await ensureConsumer(jsm, subjects, ackWaitMs);
  const consumer = await js.consumers.get(subjects.streams.journal, indexConsumer);

  // KV revision and step of entries this projector wrote or read: a write then needs no read first.
  const known = new Map<string, { step: number; revision: number }>();
  const remember = (k: string, step: number, revision: number) => {
    known.delete(k);
    known.set(k, { step, revision });
    if (known.size > cacheSize) known.delete(known.keys().next().value!);
  };
  const counts = { records: 0, written: 0 };

  /** Writes `e` unless the index already has its step or a later one. */
  async function write(e: IndexEntry): Promise<boolean> {
    const k = indexKey(e.program, e.key);
    const data = encodeEntry(e);
    let cached = known.get(k);
    for (let attempt = 0; attempt < 20; attempt++) {
      if (cached && cached.step >= e.step) return false;
      try {
        const revision = await kv.put(k, data, { previousSeq: cached?.revision ?? 0 });
        remember(k, e.step, revision);
        return true;
      } catch (err) {
        if (!isWrongLastSequence(err)) throw err;
        // Someone else wrote it (another projector, or our cache is old): read, compare, try again.
        const cur = await kv.get(k);
        const stored = cur && cur.operation === "PUT" ? parseEntry(cur.value) : undefined;
        cached = cur ? { step: stored?.step ?? 0, revision: cur.revision } : undefined;
        if (cached) remember(k, cached.step, cached.revision);
      }
    }
    throw new FlowmetalError(ErrorCode.Unavailable, `index entry ${k} kept changing under the projector`, { retryable: true });
  }

  async function project(batch: JsMsg[]): Promise<void> {
    const newest = new Map<string, IndexEntry>();
    for (const m of batch) {
      let rec: StepRecord;
      try {
        rec = decodeRecord(m.data) as StepRecord;
      } catch (err) {
        log.warn({ seq: m.seq, subject: m.subject, err: String((err as Error)?.message ?? err) }, "journal record not decodable, not indexed");
        continue;
      }
      const e = entryOf(rec);
      if (!e) continue;
      const k = indexKey(e.program, e.key);
      const prev = newest.get(k);
      if (!prev || prev.step < e.step) newest.set(k, e);
    }
    const entries = [...newest.values()];
    const results = await Promise.all(entries.map((e) => write(e)));
    const written = results.filter(Boolean).length;
    for (const m of batch) m.ack();
    counts.records += batch.length;
    counts.written += written;
    const latest = entries.reduce((t, e) => Math.max(t, e.updated), 0);
    options.onBatch?.(batch.length, written, latest ? Math.max(0, Date.now() - latest) : 0);
  }

  // Pulls with bounded fetches rather than an endless consume(): a fetch ends by itself within `fetchMs`, so
  // a draining projector can wait for it and acknowledge everything it was given. (Stopping a consume()
  // midway leaves records the server already sent unacknowledged until ack_wait runs out.)
  const queue: JsMsg[] = [];
  let wake: (() => void) | undefined;
  let roomFor: (() => void) | undefined;
  let stopping = false;
  let pulling = true;
  const fetchMs = 1_000;
  const puller = (async () => {
    try {
      while (!stopping && !nc.isClosed()) {
        while (queue.length >= batchSize * 4 && !stopping) await new Promise<void>((r) => (roomFor = r));
        if (stopping) break;
        try {
          const fetched = await consumer.fetch({ max_messages: batchSize, expires: fetchMs });
          for await (const m of fetched) {
            queue.push(m);
            wake?.();
          }
        } catch (err) {
          if (stopping || nc.isClosed()) break;
          log.warn({ err: String((err as Error)?.message ?? err) }, "index projector fetch failed, retrying");
          await new Promise((r) => setTimeout(r, 1_000));
        }
      }
    } finally {
      pulling = false;
      wake?.();
    }
  })();

  const loop = (async () => {
    for (;;) {
      if (queue.length === 0) {
        if (!pulling) return;
        await new Promise<void>((r) => (wake = r));
        wake = undefined;
        continue;
      }
      const batch = queue.splice(0, batchSize * 4);
      roomFor?.();
      roomFor = undefined;
      try {
        await project(batch);
      } catch (err) {
        // Not acked: the server gives the records again (to us or another projector).
        log.warn({ records: batch.length, err: String((err as Error)?.message ?? err) }, "index batch failed, records will be redelivered");
        for (const m of batch) m.nak(1000);
      }
    }
  })();

  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let stopped: Promise<void> | undefined;
  const drain = () =>
    (stopped ??= (async () => {
      stopping = true;
      roomFor?.();
      // The fetch in hand ends within fetchMs; everything it brought is written and acknowledged.
      await puller;
      await loop;
      resolveClosed();
    })());

  log.info({ stream: subjects.streams.journal, consumer: indexConsumer, bucket: indexBucket(subjects.prefix) }, "index projector started");
  return {
    lag: () => readIndexLag(jsm, subjects),
    counts,
    drain,
    close: drain,
    closed,
    [Symbol.asyncDispose]: drain,
  };
}
