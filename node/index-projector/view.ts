// node/index-projector/view.ts — a live in-memory copy of the actor index that answers fleet queries: list, counts, programs.
import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages, type JsMsg } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { createSubjects } from "../../protocol/subjects.js";
import { silentLogger, type Logger } from "../logger.js";
import type { ActorPage, ProgramCounts } from "../../protocol/records.js";
import { indexBucket, parseEntry, statePaths, type IndexEntry } from "./entry.js";
import { readIndexLag, type IndexLag } from "./lag.js";
import { openIndexBucket } from "./projector.js";

/** A query over one program's actors. */
export interface ListQuery {
  program: string;
  /** Only actors in this state: a dotted path from the root (`awaitingPayment`, `shipping.late`), also matching ancestors of the current state. */
  state?: string | undefined;
  /** Only actors with this status (`active`, `done`, `error`, `stopped`). */
  status?: string | undefined;
  /** Cursor: the key after which to continue (the `next` of the previous page). */
  after?: string | undefined;
  /** @default 100 */
  limit?: number | undefined;
}

export type { ActorPage, ProgramCounts };

/** The in-memory index. Queries are synchronous and cheap (no I/O); the copy follows KV within milliseconds. */
export interface IndexView extends AsyncDisposable {
  list(q: ListQuery): ActorPage;
  stats(program: string): ProgramCounts;
  /** Programs with at least one indexed actor. */
  programs(): { program: string; total: number; statuses: Record<string, number> }[];
  get(program: string, key: string): IndexEntry | undefined;
  /** Calls `listener` for every entry that changes; returns the unsubscribe function. */
  subscribe(listener: (e: IndexEntry) => void): () => void;
  /** How far the index is behind the journal (cached for 250 ms). */
  lag(): Promise<IndexLag>;
  /** Actors in the copy. */
  readonly size: number;
  drain(): Promise<void>;
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

/** Options of {@link openIndexView}. */
export interface IndexViewOptions {
  /** An open connection; the view does not close it. */
  nc: NatsConnection;
  /** @default "fm" */
  prefix?: string;
  /** Replicas of the index bucket if the view has to create it. @default 1 */
  replicas?: number;
  log?: Logger;
}

interface Row {
  entry: IndexEntry;
  paths: string[];
}

class ProgramRows {
  readonly rows = new Map<string, Row>();
  private sorted: string[] = [];
  private fresh: string[] = [];
  private removed = 0;
  readonly states = new Map<string, number>();
  readonly statuses = new Map<string, number>();
  /** Per status and state path (`<status> <path>`): a list filtered by both is counted without a scan. */
  readonly both = new Map<string, number>();

  put(e: IndexEntry): void {
    const old = this.rows.get(e.key);
    if (old) this.count(old, -1);
    else this.fresh.push(e.key);
    const row = { entry: e, paths: statePaths(e.value) };
    this.rows.set(e.key, row);
    this.count(row, 1);
  }

  delete(key: string): void {
    const old = this.rows.get(key);
    if (!old) return;
    this.count(old, -1);
    this.rows.delete(key);
    this.removed++;
  }

  private count(r: Row, d: number): void {
    for (const p of r.paths) {
      bump(this.states, p, d);
      bump(this.both, `${r.entry.status} ${p}`, d);
    }
    bump(this.statuses, r.entry.status, d);
  }

  /** Keys in order; new keys are sorted on their own and merged in, so a query after a burst costs O(n + m log m). */
  keys(): string[] {
    if (this.removed > 0 && this.removed * 10 > this.sorted.length) {
      this.sorted = this.sorted.filter((k) => this.rows.has(k));
      this.removed = 0;
    }
    if (this.fresh.length === 0) return this.sorted;
    const add = this.fresh.sort(compare);
    this.fresh = [];
    const out = new Array<string>(this.sorted.length + add.length);
    let i = 0;
    let j = 0;
    let n = 0;
    while (i < this.sorted.length || j < add.length) {
      if (j >= add.length || (i < this.sorted.length && this.sorted[i]! < add[j]!)) out[n++] = this.sorted[i++]!;
      else out[n++] = add[j++]!;
    }
    this.sorted = out;
    return out;
  }
}

function bump(m: Map<string, number>, k: string, d: number): void {
  const n = (m.get(k) ?? 0) + d;
  if (n > 0) m.set(k, n);
  else m.delete(k);
}

const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/** First index in `sorted` whose key is greater than `k`. */
function upperBound(sorted: readonly string[], k: string): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! <= k) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Opens the in-memory index: reads the latest entry of every actor from KV `<prefix>_index`, then follows
 * changes. Resolves once the copy has caught up with the bucket. Memory: a few hundred bytes per actor.
 */
export async function openIndexView(options: IndexViewOptions): Promise<IndexView> {
  const { nc } = options;
  const log = options.log ?? silentLogger;
  const subjects = createSubjects(options.prefix);
  const bucket = indexBucket(subjects.prefix);
  const jsm = await jetstreamManager(nc);
  await openIndexBucket(nc, subjects.prefix, options.replicas ?? 1);
  const stream = `KV_${bucket}`;
  const subjectPrefix = `$KV.${bucket}.`;
  const programs = new Map<string, ProgramRows>();
  const listeners = new Set<(e: IndexEntry) => void>();
  let size = 0;

  const apply = (m: JsMsg) => {
    const rest = m.subject.startsWith(subjectPrefix) ? m.subject.slice(subjectPrefix.length) : "";
    const dot = rest.indexOf(".");
    if (dot <= 0) return;
    const program = rest.slice(0, dot);
    const key = rest.slice(dot + 1);
    const op = m.headers?.get("KV-Operation");
    let rows = programs.get(program);
    if (op === "DEL" || op === "PURGE") {
      if (rows?.rows.has(key)) size--;
      rows?.delete(key);
      return;
    }
    const e = parseEntry(m.data);
    if (!e) return;
    if (!rows) programs.set(program, (rows = new ProgramRows()));
    if (!rows.rows.has(key)) size++;
    rows.put(e);
    for (const l of listeners) {
      try {
        l(e);
      } catch (err) {
        log.warn({ err: String(err) }, "index listener threw");
      }
    }
  };

  const info = await jsm.streams.info(stream);
  let resolveReady!: () => void;
  const ready = new Promise<void>((r) => (resolveReady = r));
  if (info.state.messages === 0) resolveReady();
  const consumer = await jetstream(nc).consumers.get(stream, { filter_subjects: [`${subjectPrefix}>`], deliver_policy: DeliverPolicy.LastPerSubject });
  const messages: ConsumerMessages = await consumer.consume({
    max_messages: 5_000,
    callback: (m) => {
      apply(m);
      if (m.info.pending === 0) resolveReady();
    },
  });
  await ready;

  let lagCache: { at: number; value: Promise<IndexLag> } | undefined;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let stopping: Promise<void> | undefined;
  const drain = () =>
    (stopping ??= (async () => {
      await messages.close().catch(() => undefined);
      listeners.clear();
      resolveClosed();
    })());

  return {
    list(q) {
      const rows = programs.get(q.program);
      const limit = q.limit ?? 100;
      const res: ActorPage = { program: q.program, actors: [], total: 0 };
      if (!rows) return res;
      const keys = rows.keys();
      const match = (r: Row) => (q.state === undefined || r.paths.includes(q.state)) && (q.status === undefined || r.entry.status === q.status);
      res.total =
        q.state !== undefined && q.status !== undefined
          ? (rows.both.get(`${q.status} ${q.state}`) ?? 0)
          : q.state !== undefined
            ? (rows.states.get(q.state) ?? 0)
            : q.status !== undefined
              ? (rows.statuses.get(q.status) ?? 0)
              : rows.rows.size;
      // Scans from the cursor until one match past the page: a page costs what lies between its matches.
      for (let i = q.after === undefined ? 0 : upperBound(keys, q.after); i < keys.length; i++) {
        const r = rows.rows.get(keys[i]!);
        if (!r || !match(r)) continue;
        if (res.actors.length === limit) {
          res.next = res.actors[res.actors.length - 1]!.key;
          break;
        }
        res.actors.push({ actor: `${r.entry.program}/${r.entry.key}`, ...r.entry });
      }
      return res;
    },
    stats(program) {
      const rows = programs.get(program);
      return {
        program,
        total: rows?.rows.size ?? 0,
        states: Object.fromEntries(rows?.states ?? []),
        statuses: Object.fromEntries(rows?.statuses ?? []),
      };
    },
    programs() {
      return [...programs.entries()]
        .filter(([, r]) => r.rows.size > 0)
        .map(([program, r]) => ({ program, total: r.rows.size, statuses: Object.fromEntries(r.statuses) }))
        .sort((a, b) => compare(a.program, b.program));
    },
    get(program, key) {
      return programs.get(program)?.rows.get(key)?.entry;
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    lag() {
      const now = Date.now();
      if (!lagCache || now - lagCache.at > 250) {
        const value = readIndexLag(jsm, subjects);
        value.catch(() => (lagCache = undefined));
        lagCache = { at: now, value };
      }
      return lagCache.value;
    },
    get size() {
      return size;
    },
    drain,
    close: drain,
    closed,
    [Symbol.asyncDispose]: drain,
  };
}

/** An index view opened on first use and shared by everyone holding the source. */
export interface IndexViewSource {
  /** The view, opening it the first time. */
  get(): Promise<IndexView>;
  /** Closes the view if it was opened. */
  close(): Promise<void>;
}

/** A source that opens the view only when something asks for it (a fleet query). */
export function lazyIndexView(options: IndexViewOptions): IndexViewSource {
  let view: Promise<IndexView> | undefined;
  return {
    get() {
      view ??= openIndexView(options);
      view.catch(() => (view = undefined));
      return view;
    },
    async close() {
      const v = view;
      view = undefined;
      if (v) await (await v.catch(() => undefined))?.close();
    },
  };
}
