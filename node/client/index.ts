// node/client/index.ts — the typed client for fm.api.*: send, ask, get, history. Loads no server code.
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../../protocol/connect.js";
import { decodePayload, encodePayload } from "../../protocol/codec.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import type { ActorPage, ActorView, ApiReply, ClusterView, HistoryPage, MoveResult, ProgramStats, SendResult, StateNotice, WireEvent } from "../../protocol/records.js";
import { ApiVerb, createSubjects, type Subjects } from "../../protocol/subjects.js";

export { FlowmetalError, ErrorCode } from "../../protocol/errors.js";
export type { ActorPage, ActorView, ClusterView, HistoryPage, HistoryStep, IndexedActor, MoveResult, ProgramStats, SendResult, StateNotice, WireEvent } from "../../protocol/records.js";

export interface ClientOptions {
  /** NATS server URL(s), comma-separated or an array, credentials allowed (`nats://user:pass@host:4222`). Ignored when `nc` is given. @default "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** An open connection to use (the client then does not close it). */
  nc?: NatsConnection;
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** Request timeout for verbs other than ask. @default 10000 */
  timeoutMs?: number;
}

export interface SendOptions {
  /** Dedupe key: a retry with the same msgId within the duplicate window is stored once. */
  msgId?: string;
}

export interface AskOptions extends SendOptions {
  /** How long to wait for the step. @default 10000 */
  timeoutMs?: number;
}

/** What `ask` returns: the outcome of the step that took the event. */
export interface AskResult extends StateNotice {
  duplicate: boolean;
}

export interface Client extends AsyncDisposable {
  /** Sends an event; resolves once it is durably accepted (not yet processed). */
  send(actor: string, event: WireEvent, options?: SendOptions): Promise<SendResult>;
  /**
   * Sends an event and waits for the step that takes it. Rejects with `FM_ERR_EVENT_NOT_ACCEPTED` when the
   * current state has no transition for it, `FM_ERR_STEP_FAILED` when a guard or action threw (both are
   * still recorded in the history), `FM_ERR_TIMEOUT` when the step did not happen in time.
   */
  ask(actor: string, event: WireEvent, options?: AskOptions): Promise<AskResult>;
  /** The actor's current state; rejects with `FM_ERR_UNKNOWN_ACTOR` if it has taken no step. */
  get(actor: string): Promise<ActorView>;
  /** A page of the actor's steps; pass `page.next` as `after` for the next one, or `at` for one step. */
  history(actor: string, options?: { after?: number; limit?: number; at?: number }): Promise<HistoryPage>;
  /** Nodes, shards, owners and epochs (cluster nodes only). */
  cluster(): Promise<ClusterView>;
  /**
   * Moves a shard, or the shard of `<program>/<key>`, to `node`; resolves once that node owns it (within
   * `timeoutMs`, default 30 s). Asks in rounds of a few seconds: when the node serving a round dies (or the
   * owner takes long to let go), the next round is asked of whichever node answers, and continues the same
   * move. `ms` counts from the first round; `from` is the owner when the answering round began.
   */
  move(target: string, node: string, timeoutMs?: number): Promise<MoveResult>;
  /** Starts draining `node` (or with `undo`, stops): its shards move to other nodes. */
  drain(node: string, options?: { undo?: boolean }): Promise<{ node: string; draining: boolean; shardsLeft: number[] }>;
  /** Actors of a program from the actor index, filtered by state (dotted path) and status, paged by key. */
  list(program: string, options?: { state?: string; status?: string; after?: string; limit?: number }): Promise<ActorPage>;
  /** How many actors of a program are in each state and status, from the actor index. */
  stats(program: string): Promise<ProgramStats>;
  /** Programs and functions the serving node has loaded. */
  programs(): Promise<{ programs: { name: string; version: string; description: string | null }[]; functions: string[] }>;
  close(): Promise<void>;
}

/**
 * Connects a client.
 * @example
 * await using fm = await createClient({ servers: "nats://127.0.0.1:4222" });
 * const r = await fm.ask("order/o-17", { type: "PLACE" });
 */
export async function createClient(options: ClientOptions = {}): Promise<Client> {
  const own = !options.nc;
  const nc: NatsConnection = options.nc ?? (await connectNats(options.servers, { name: "flowmetal-client" }));
  const subjects: Subjects = createSubjects(options.prefix);
  const defaultTimeout = options.timeoutMs ?? 10_000;

  async function call<T>(verb: string, body: Record<string, unknown>, timeoutMs = defaultTimeout): Promise<T> {
    const data = encodePayload(body, "json");
    const max = nc.info?.max_payload;
    if (max !== undefined && data.length > max) {
      throw new FlowmetalError(ErrorCode.PayloadTooLarge, `${verb} request is ${data.length} bytes, over the server's ${max}-byte max_payload`);
    }
    let m;
    try {
      m = await nc.request(subjects.api(verb), data, { timeout: timeoutMs });
    } catch (err) {
      const msg = String((err as Error).message);
      if (/no responders/i.test(msg)) {
        throw new FlowmetalError(ErrorCode.Unavailable, `no Flowmetal node serves ${subjects.api(verb)}: start one with 'flowmetal dev' or 'flowmetal node'`, { cause: err });
      }
      if (/timeout/i.test(msg)) throw new FlowmetalError(ErrorCode.Timeout, `${verb} got no reply within ${timeoutMs} ms`, { cause: err });
      throw new FlowmetalError(ErrorCode.Unavailable, `${verb} failed: ${msg}`, { cause: err });
    }
    const reply = decodePayload(m.data, "json") as ApiReply<T>;
    if (reply.ok) return reply.result;
    throw FlowmetalError.fromWire(reply.error);
  }

  const client: Client = {
    send: (actor, event, o = {}) => call(ApiVerb.Send, { actor, event, ...o }),
    ask: (actor, event, o = {}) => call(ApiVerb.Ask, { actor, event, ...o }, (o.timeoutMs ?? 10_000) + 2_000),
    get: (actor) => call(ApiVerb.Get, { actor }),
    history: (actor, o = {}) => call(ApiVerb.History, { actor, ...o }),
    programs: () => call(ApiVerb.Programs, {}),
    list: (program, o = {}) => call(ApiVerb.List, { program, ...o }),
    stats: (program) => call(ApiVerb.Stats, { program }),
    cluster: () => call(ApiVerb.Cluster, {}),
    async move(target, node, timeoutMs = 30_000) {
      const t0 = Date.now();
      // One round's wait on the server; a round with no reply (its node died) is noticed a second after it.
      const round = Math.min(5_000, Math.max(250, Math.floor(timeoutMs / 4)));
      for (;;) {
        const wait = Math.max(1, Math.min(round, timeoutMs - (Date.now() - t0)));
        try {
          const r = await call<MoveResult>(ApiVerb.Move, { target, node, timeoutMs: wait }, wait + 1_000);
          return { ...r, ms: Date.now() - t0 };
        } catch (err) {
          // Pinning is idempotent: asking again continues the same move. Anything else (a bad target, an unknown
          // node, no node at all) is final.
          if (!FlowmetalError.is(err, ErrorCode.Timeout) || Date.now() - t0 >= timeoutMs) throw err;
        }
      }
    },
    drain: (node, o = {}) => call(ApiVerb.Drain, { node, undo: o.undo === true }),
    async close() {
      if (own && !nc.isClosed()) await nc.close();
    },
    [Symbol.asyncDispose]() {
      return client.close();
    },
  };
  return client;
}
