// node/host.ts — runs the actors of the shards this node owns: one consumer per shard, one step at a time per actor.
import { AckPolicy, DeliverPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { decodePayload, encodePayload, encodingFromContentType, type DecodeLimits } from "../protocol/codec.js";
import { ErrorCode, FlowmetalError, toWireError } from "../protocol/errors.js";
import { parseEvent } from "../protocol/events.js";
import type { CallResult, StepRecord, WireEvent } from "../protocol/records.js";
import { ContentType, Header, InboxKind, formatAddress, parseActorKey, parseProgramName, type ActorAddress, type Subjects } from "../protocol/subjects.js";
import { toNotice } from "./views.js";
import type { Metrics } from "../protocol/metrics.js";
import type { EffectPublisher } from "./effects.js";
import { appendStep, readLast } from "./journal.js";
import { wireHeaders, type Publisher } from "./publisher.js";
import type { Logger } from "./logger.js";
import type { ProgramDefinition } from "./program.js";
import { failpoint } from "./failpoints.js";
import { retryWithBackoff } from "../protocol/retry.js";
import { advance, planStep, restoreSnapshot, type ActorState, type StepInput } from "./step.js";

export interface HostOptions {
  /** This node's name, recorded in every step. */
  node: string;
  /** Actors idle this long are dropped from memory (their state is in the journal). @default 30000 */
  passivateAfterMs: number;
  /** At most this many actors are kept in memory per shard; idle ones beyond it are passivated first. */
  maxActiveActors: number;
  /** Inbox messages in flight per shard. @default 512 */
  maxInFlight: number;
  /** Inbox ack wait: an unacked message is redelivered after it. @default 60000 */
  ackWaitMs: number;
  limits: DecodeLimits;
}

interface Entry {
  address: ActorAddress;
  state: ActorState | undefined;
  queue: JsMsg[];
  running: boolean;
  lastUsed: number;
}

/** What a shard runner needs from the node. */
export interface HostDeps {
  metrics: Metrics;
  nc: NatsConnection;
  js: JetStreamClient;
  /** Acknowledged publishes on the step path (journal appends). */
  publisher: Publisher;
  jsm: JetStreamManager;
  subjects: Subjects;
  programs: ReadonlyMap<string, ProgramDefinition>;
  effects: EffectPublisher;
  log: Logger;
  options: HostOptions;
}

/** One consumer per shard and ownership epoch: a paused old owner can never pull from the new owner's consumer. */
export function consumerName(shard: number, epoch: number): string {
  return `shard-${shard}-e${epoch}`;
}

/** Names of a stream's consumers, from the JetStream API's CONSUMER.NAMES (answered from metadata alone). */
async function consumerNames(nc: NatsConnection, stream: string): Promise<string[]> {
  const names: string[] = [];
  for (let offset = 0; ; ) {
    const m = await nc.request(`$JS.API.CONSUMER.NAMES.${stream}`, JSON.stringify({ offset }), { timeout: 5_000 });
    const r = m.json<{ total?: number; consumers?: string[] | null; error?: { description?: string } }>();
    if (r.error) throw new Error(`listing consumers of ${stream}: ${r.error.description}`);
    const page = r.consumers ?? [];
    names.push(...page);
    offset += page.length;
    if (page.length === 0 || offset >= (r.total ?? 0)) return names;
  }
}

/** Retries `fn` on retryable errors with capped backoff until it succeeds or `stopped()` says to give up. */
function persist<T>(fn: () => Promise<T>, stopped: () => boolean, log: Logger, what: string): Promise<T> {
  return retryWithBackoff(fn, {
    firstDelayMs: 50,
    giveUp: (err) => !FlowmetalError.is(err) || !err.retryable || err.code === ErrorCode.StaleOwner || stopped(),
    onRetry: (err, retryInMs) => log.warn({ err: (err as Error).message, retryInMs }, `${what} failed, retrying`),
  });
}

/**
 * Runs one shard: recreates its consumer (so every unacked input comes again at once, in order), routes
 * each input to its actor's queue, and takes steps — per actor strictly in inbox order, across actors
 * in parallel.
 */
export class ShardRunner {
  private readonly actors = new Map<string, Entry>();
  private messages: ConsumerMessages | undefined;
  private inFlight = 0;
  /** Received in order but not dispatched yet: the shard has `maxInFlight` inputs in flight. */
  private waiting: JsMsg[] = [];
  private stopping = false;
  private fenced = false;
  private sweeper: NodeJS.Timeout | undefined;
  /** A consumer resync in progress (awaited by drain). */
  private resyncing: Promise<void> | undefined;
  private readonly idle = new Set<() => void>();
  /** True once the runner stops or is fenced: retries give up, and what is queued stays for the next owner. */
  private readonly halted = () => this.stopping || this.fenced;

  constructor(
    readonly shard: number,
    readonly epoch: number,
    private readonly deps: HostDeps,
    private readonly onFenced: (shard: number) => void = () => {},
    private readonly mayAppend: (shard: number, epoch: number) => boolean | "wait" = () => true,
  ) {}

  /** Actors currently held in memory (for metrics and the memory benchmark). */
  get activeActors(): number {
    return this.actors.size;
  }

  async start(): Promise<void> {
    await this.openConsumer(false);
    this.sweeper = setInterval(() => this.sweep(), Math.max(100, Math.min(this.deps.options.passivateAfterMs / 2, 5000)));
    this.sweeper.unref();
  }

  /**
   * Creates this epoch's consumer and starts pulling from it. A fresh consumer delivers every message not
   * yet acked, in stream order, without waiting for ack_wait. Earlier owners' consumers go first (a work
   * queue allows one consumer per filter). `recreate` also deletes this epoch's own consumer (a resync);
   * otherwise an existing one that has delivered nothing yet (a create that timed out but went through) is
   * kept: adding it again with the same configuration is idempotent.
   */
  private async openConsumer(recreate: boolean): Promise<void> {
    const { jsm, js, subjects, options } = this.deps;
    const stream = subjects.streams.inbox;
    const name = consumerName(this.shard, this.epoch);
    const filter = subjects.inboxShard(this.shard);
    const ackWait = options.ackWaitMs * 1_000_000;
    const maxAckPending = Math.max(options.maxInFlight * 2, 1000);
    const t0 = performance.now();
    // By name, not by listing consumer infos: in a cluster that list asks every consumer's leader and waits
    // seconds for any that has none (one just deleted by the previous owner), which made handoffs take 4 s.
    for (const other of await consumerNames(this.deps.nc, stream)) {
      const parsed = /^shard-(\d+)-e(\d+)$/.exec(other);
      if (!parsed || Number(parsed[1]) !== this.shard) continue;
      // A newer owner's consumer means this runner is stale (it was paused or cut off): leave it alone.
      if (Number(parsed[2]) > this.epoch) {
        throw new FlowmetalError(ErrorCode.StaleOwner, `shard ${this.shard} already has ${other}, newer than this runner's epoch ${this.epoch}`);
      }
      if (other === name && !recreate) {
        // Kept only if untouched and configured as below (a create that timed out but went through).
        const ci = await jsm.consumers.info(stream, name).catch(() => undefined);
        if (ci && ci.delivered.consumer_seq === 0 && ci.config.ack_wait === ackWait && ci.config.max_ack_pending === maxAckPending && ci.config.filter_subject === filter) continue;
      }
      await jsm.consumers.delete(stream, other).catch(() => undefined);
    }
    const t1 = performance.now();
    // A create that times out fails the start; the node hands the shard back to the placement, which tries
    // again after a short cooldown (waiting here instead would hold up every other ownership change).
    await jsm.consumers.add(stream, {
      durable_name: name,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      filter_subject: filter,
      ack_wait: ackWait,
      max_ack_pending: maxAckPending,
      max_deliver: -1,
    });
    const t2 = performance.now();
    const consumer = await js.consumers.get(stream, name);
    // A callback, not the async iterator: no promise per message, and the inputs of one read are dispatched
    // together, so their appends leave in one write.
    const intake = { expected: 1, broken: false };
    const messages = await consumer.consume({ max_messages: options.maxInFlight, callback: (m) => this.receive(m, intake) });
    this.messages = messages;
    void messages.closed().then((err) => {
      if (!err || this.halted() || this.messages !== messages) return;
      // nats.js gives a consumer up only on errors it cannot pull past (a pull answered 400, a refused
      // subscription); the shard would take no input again. Recreate it, as after a lost delivery.
      this.deps.log.error({ shard: this.shard, epoch: this.epoch, err: String(err) }, "shard consumer stopped, recreating it");
      intake.broken = true;
      this.resyncing = this.resync();
    });
    const t3 = performance.now();
    this.deps.log.debug({ shard: this.shard, epoch: this.epoch, listDeleteMs: Math.round(t1 - t0), addMs: Math.round(t2 - t1), consumeMs: Math.round(t3 - t2), totalMs: Math.round(t3 - t0) }, "shard consumer opened");
    void this.watchStatus(messages);
  }

  /**
   * Takes one delivery from the shard's consumer. Per actor, inputs must become steps in inbox order: a step
   * records the inbox sequence it consumed, and anything at or below it is treated as a redelivery. So a
   * delivery lost on its way here (a reconnect, a pull answered to a client that went away) must not be
   * overtaken by later inputs: it would come back after ack_wait, below the actor's sequence, and be
   * dropped. The consumer numbers its deliveries 1, 2, 3…; a gap means one went missing, and the runner
   * stops dispatching, lets the steps in flight finish, and recreates the consumer, which delivers every
   * unacked input again in stream order.
   */
  private receive(m: JsMsg, intake: { expected: number; broken: boolean }): void {
    // Not dispatched: stays unacked, and comes again from the recreated (or the next owner's) consumer.
    if (intake.broken || this.halted()) return;
    try {
      const delivered = m.info.deliverySequence;
      if (delivered !== intake.expected) {
        intake.broken = true;
        this.deps.log.warn({ shard: this.shard, epoch: this.epoch, expected: intake.expected, got: delivered }, "a delivery went missing, recreating the shard consumer to keep inputs in order");
        this.resyncing = this.resync();
        return;
      }
      intake.expected++;
      if (this.inFlight >= this.deps.options.maxInFlight) this.waiting.push(m);
      else this.dispatch(m);
    } catch (err) {
      this.deps.log.error({ shard: this.shard, err: String((err as Error)?.message ?? err) }, "shard intake failed");
    }
  }

  /** Stops intake, waits for the steps in flight, and recreates the consumer (see {@link receive}). */
  private async resync(): Promise<void> {
    this.deps.metrics.consumerResynced(this.shard);
    const messages = this.messages;
    this.messages = undefined;
    messages?.stop();
    // Inputs received before the gap (in flight or waiting for a slot) are steps to take first.
    if (this.inFlight > 0) await new Promise<void>((r) => this.idle.add(r));
    if (this.halted()) return;
    try {
      await retryWithBackoff(() => this.openConsumer(true), {
        firstDelayMs: 100,
        giveUp: (err) => FlowmetalError.is(err, ErrorCode.StaleOwner),
        stopped: this.halted,
        onRetry: (err, retryInMs) => this.deps.log.warn({ shard: this.shard, err: String((err as Error)?.message ?? err), retryInMs }, "recreating the shard consumer failed, retrying"),
      });
    } catch (err) {
      if (FlowmetalError.is(err, ErrorCode.StaleOwner)) {
        this.deps.log.warn({ shard: this.shard, epoch: this.epoch, err: err.message }, "a newer owner has the shard, stopping it");
        this.fence();
      }
      return;
    }
    if (this.halted()) (this.messages as ConsumerMessages | undefined)?.stop(); // opened just before a stop or fence
  }

  /** A newer owner deletes this runner's consumer when it takes the shard: that is a fence too. */
  private async watchStatus(messages: ConsumerMessages): Promise<void> {
    try {
      for await (const st of messages.status()) {
        // A runner's own resync deletes its consumer too; by then `this.messages` no longer points here.
        if (st.type === "consumer_deleted" && !this.stopping && this.messages === messages) {
          this.deps.log.warn({ shard: this.shard, epoch: this.epoch }, "consumer deleted by a newer owner, stopping shard");
          this.fence();
          return;
        }
      }
    } catch {
      // status stream ends with the consumer
    }
  }

  private dispatch(m: JsMsg): void {
    const parsed = this.deps.subjects.parseInboxStored(m.subject);
    if (!parsed) {
      m.term();
      return;
    }
    const id = `${parsed.program}/${parsed.key}`;
    let e = this.actors.get(id);
    if (!e) {
      e = { address: { program: parsed.program, key: parsed.key } as ActorAddress, state: undefined, queue: [], running: false, lastUsed: Date.now() };
      this.actors.set(id, e);
    }
    this.inFlight++;
    e.queue.push(m);
    if (!e.running) void this.drainActor(e);
  }

  /** Drops an actor's queued messages after the first `keep` ones and frees their in-flight slots. */
  private release(e: Entry, keep: number): void {
    this.inFlight -= e.queue.splice(keep).length;
    this.slotsFreed();
  }

  /** The head message of an actor is done (acked): free its slot. */
  private completed(e: Entry): void {
    e.queue.shift();
    this.inFlight--;
    this.slotsFreed();
  }

  /** Dispatches inputs waiting for a slot, in the order received; wakes whoever waits for the shard to be idle. */
  private slotsFreed(): void {
    const max = this.deps.options.maxInFlight;
    while (this.waiting.length > 0 && this.inFlight < max && !this.halted()) this.dispatch(this.waiting.shift()!);
    if (this.inFlight === 0) {
      // Each waiter is a one-shot promise: woken once, then forgotten (the set grew with every drain and resync).
      for (const r of this.idle) r();
      this.idle.clear();
    }
  }

  private async drainActor(e: Entry): Promise<void> {
    e.running = true;
    try {
      while (e.queue.length > 0 && !this.fenced && !this.stopping) {
        const m = e.queue[0]!;
        try {
          await this.handle(e, m);
          this.completed(e);
        } catch (err) {
          if (FlowmetalError.is(err, ErrorCode.StaleOwner)) {
            this.deps.log.warn({ actor: formatAddress(e.address), shard: this.shard }, "fenced off by a newer owner, stopping shard");
            this.fence();
            break;
          }
          if (this.stopping) break;
          // Not a step: it stays at the head of the queue (order per actor must hold) and is retried.
          this.deps.log.error({ actor: formatAddress(e.address), err: String((err as Error)?.message ?? err) }, "step failed, retrying");
          e.state = undefined; // reload from the journal: the truth may have moved
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    } finally {
      e.running = false;
      e.lastUsed = Date.now();
    }
    // Stopping or fenced: whatever is still queued stays unacked for the next owner. Only now that this loop
    // is over: an input the release dispatches for this same actor must start a new loop, not be left queued.
    this.release(e, 0);
  }

  private fence(): void {
    if (this.fenced || this.stopping) return;
    this.fenced = true;
    this.messages?.stop();
    this.waiting = []; // stay unacked for the next owner
    for (const e of this.actors.values()) if (!e.running) this.release(e, 0);
    this.onFenced(this.shard);
  }

  private async deadLetter(m: JsMsg, program: string, key: string, reason: unknown): Promise<void> {
    const { js, subjects, log } = this.deps;
    const wire = toWireError(reason);
    const h = m.headers;
    const hdrs = natsHeaders();
    if (h) for (const [k, v] of h) if (!k.startsWith("Nats-")) for (const x of v) hdrs.append(k, x);
    const originalId = h?.get(Header.MsgId);
    if (originalId) hdrs.set("Fm-Original-Msg-Id", originalId);
    hdrs.set("Fm-Error-Code", wire.code);
    hdrs.set("Fm-Error", wire.message.slice(0, 512).replace(/[\r\n]/g, " "));
    hdrs.set("Fm-Inbox-Seq", String(m.seq));
    await js.publish(subjects.dead(program, key), m.data, { headers: hdrs, msgID: `dead.${subjects.streams.inbox}.${m.seq}` });
    log.warn({ actor: `${program}/${key}`, seq: m.seq, code: wire.code, reason: wire.message }, "input cannot become a step, dead-lettered");
    this.deps.metrics.inputSkipped("dead");
    m.ack();
  }

  private decodeInput(m: JsMsg): StepInput {
    const kind = m.headers?.get(Header.Kind) ?? "";
    const encoding = encodingFromContentType(m.headers?.get(Header.ContentType));
    const body = decodePayload(m.data, encoding, this.deps.options.limits);
    switch (kind) {
      case "":
        return { seq: m.seq, kind: "event", event: parseEvent(body) };
      case InboxKind.Send: {
        const from = m.headers?.get(Header.From);
        const effect = m.headers?.get(Header.Effect);
        return { seq: m.seq, kind: "send", event: parseEvent(body), ...(from ? { from } : {}), ...(effect ? { effect } : {}) };
      }
      case InboxKind.Timer: {
        const timer = decodeURIComponent(m.headers?.get(Header.Timer) ?? "");
        const gen = Number(m.headers?.get(Header.TimerGen));
        if (!timer || !Number.isInteger(gen)) throw new FlowmetalError(ErrorCode.MalformedPayload, "timer message without Fm-Timer / Fm-Timer-Gen headers");
        return { seq: m.seq, kind: "timer", timer, gen, event: body as WireEvent };
      }
      case InboxKind.Result:
        return { seq: m.seq, kind: "result", result: parseCallResult(body) };
      default:
        throw new FlowmetalError(ErrorCode.MalformedPayload, `unknown ${Header.Kind} '${kind}' (expected timer, result, send or none)`);
    }
  }

  private async load(e: Entry, program: ProgramDefinition): Promise<ActorState> {
    const last = await persist(
      async () => {
        try {
          return await readLast(this.deps.jsm, this.deps.subjects, e.address);
        } catch (err) {
          throw new FlowmetalError(ErrorCode.Unavailable, `loading ${formatAddress(e.address)} failed: ${(err as Error).message}`, { cause: err });
        }
      },
      this.halted,
      this.deps.log,
      "actor load",
    );
    if (!last) return { address: e.address, step: 0, seq: 0, journalSeq: 0, snapshot: undefined, timers: {}, calls: {}, senders: {}, last: undefined };
    const r = last.record;
    return {
      address: e.address,
      step: r.step,
      seq: r.seq,
      journalSeq: last.seq,
      snapshot: r.snapshot ? restoreSnapshot(program.machine, r.snapshot) : undefined,
      timers: r.timers,
      calls: r.calls,
      senders: r.senders ?? {},
      last: r,
    };
  }

  private async handle(e: Entry, m: JsMsg): Promise<void> {
    const { programs, subjects, effects, log, options } = this.deps;
    e.lastUsed = Date.now();
    let program: ProgramDefinition | undefined;
    try {
      parseProgramName(e.address.program);
      parseActorKey(e.address.key);
      program = programs.get(e.address.program);
      if (!program) {
        throw new FlowmetalError(ErrorCode.UnknownProgram, `unknown program '${e.address.program}' (loaded: ${[...programs.keys()].join(", ") || "none"})`);
      }
    } catch (err) {
      return this.deadLetter(m, e.address.program, e.address.key, err);
    }
    if (!e.state) e.state = await this.load(e, program);
    const state = e.state;
    if (m.seq <= state.seq) {
      // Redelivered: the step is in the journal. Its effects may not have gone out before a crash.
      if (m.seq === state.seq && state.last) await persist(() => effects.publish(e.address, state.last!, { republish: true }), this.halted, log, "effect publish");
      this.deps.metrics.inputSkipped("redelivered");
      m.ack();
      return;
    }
    let input: StepInput;
    try {
      input = this.decodeInput(m);
    } catch (err) {
      return this.deadLetter(m, e.address.program, e.address.key, err);
    }
    const started = performance.now();
    const plan = planStep(program, state, input, { time: Date.now(), epoch: this.epoch, node: options.node });
    if (plan.kind === "drop") {
      log.debug({ actor: formatAddress(e.address), seq: m.seq, reason: plan.reason }, "input dropped");
      this.deps.metrics.inputSkipped("stale");
      m.ack();
      return;
    }
    const rec = plan.record;
    failpoint("before-append");
    const appendStarted = performance.now();
    const journalSeq = await persist(
      () => {
        // Asked before every attempt: a retry after a slow failure must not outlive the lease.
        const may = this.mayAppend(this.shard, this.epoch);
        if (may === "wait") throw new FlowmetalError(ErrorCode.Unavailable, `lease for shard ${this.shard} lapsed; waiting for the next heartbeat`);
        if (!may) throw new FlowmetalError(ErrorCode.StaleOwner, `shard ${this.shard} at epoch ${this.epoch} is no longer this node's`);
        return appendStep(this.deps.publisher, this.deps.jsm, subjects, e.address, rec, state.journalSeq);
      },
      this.halted,
      log,
      "journal append",
    );
    const appendMs = performance.now() - appendStarted;
    advance(state, rec, plan.snapshot, journalSeq);
    failpoint("after-append");
    if (rec.effects.length > 0) await persist(() => effects.publish(e.address, rec), this.halted, log, "effect publish");
    this.notify(e.address, rec);
    const metrics = this.deps.metrics;
    for (const x of rec.effects) metrics.effectPublished(x.kind);
    metrics.stepTaken(e.address.program, rec.outcome, performance.now() - started, appendMs);
    for (const c of plan.custom) {
      try {
        c.run();
      } catch (err) {
        log.warn({ actor: formatAddress(e.address), action: c.type, err: String(err) }, "custom action threw after the step");
      }
    }
    failpoint("before-ack");
    m.ack();
    if (rec.outcome === "failed") log.warn({ actor: rec.actor, step: rec.step, code: rec.error?.code, err: rec.error?.message }, "step failed, recorded");
  }

  private notify(a: ActorAddress, rec: StepRecord): void {
    try {
      this.deps.nc.publish(this.deps.subjects.state(a), encodePayload(toNotice(rec), "json"), { headers: jsonHeaders });
    } catch (err) {
      this.deps.log.warn({ actor: rec.actor, err: String(err) }, "state notice not published");
    }
  }

  private sweep(): void {
    const now = Date.now();
    const { passivateAfterMs, maxActiveActors } = this.deps.options;
    for (const [id, e] of this.actors) {
      if (!e.running && e.queue.length === 0 && now - e.lastUsed >= passivateAfterMs) this.actors.delete(id);
    }
    if (this.actors.size > maxActiveActors) {
      const idle = [...this.actors].filter(([, e]) => !e.running && e.queue.length === 0).sort((x, y) => x[1].lastUsed - y[1].lastUsed);
      for (const [id] of idle.slice(0, this.actors.size - maxActiveActors)) this.actors.delete(id);
    }
  }

  /** Stops intake, lets steps in flight finish (their effects go out), then returns. */
  async drain(): Promise<void> {
    this.stopping = true;
    clearInterval(this.sweeper);
    this.messages?.stop();
    // Queued messages behind a running step are left unacked: the next owner gets them again.
    this.waiting = [];
    for (const e of this.actors.values()) this.release(e, e.running ? 1 : 0);
    if (this.inFlight > 0) await new Promise<void>((r) => this.idle.add(r));
    await this.resyncing;
    this.actors.clear();
  }
}

/** One shared headers block for state notices (building one per step showed in profiles). */
const jsonHeaders = wireHeaders([[Header.ContentType, ContentType.Json]]);

/** Checks a function result body: `{ callId, output }` or `{ callId, error: { code, message } }`. */
export function parseCallResult(body: unknown): CallResult {
  const o = body as { callId?: unknown; output?: unknown; error?: unknown } | null;
  if (typeof o !== "object" || o === null || typeof o.callId !== "string") {
    throw new FlowmetalError(ErrorCode.MalformedPayload, "a function result needs a string 'callId'");
  }
  // Exactly one of the two: `"error": null` (what many serializers write) means no error.
  if ("error" in o && o.error !== undefined && o.error !== null) {
    return { callId: o.callId, error: FlowmetalError.fromWire(o.error).toWire() };
  }
  return { callId: o.callId, output: o.output ?? null };
}
