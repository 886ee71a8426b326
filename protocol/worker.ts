// protocol/worker.ts — the function-worker side of the call protocol (PROTOCOL.md §5): consume calls, run them with timeout and retries, reply to the caller's inbox.
import { AckPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { decodePayload, encodePayload } from "./codec.js";
import { ErrorCode, FlowmetalError, type WireError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { CallMessage, CallResult } from "./records.js";
import { noMetrics, type Metrics } from "./metrics.js";
import { backoffMs, retryWithBackoff, type RetryPolicy } from "./retry.js";
import { ContentType, Header, InboxKind, parseActorAddress, type Subjects } from "./subjects.js";

/** What a function implementation is told about the call. */
export interface CallContext {
  /** Aborted when the attempt times out or the calling actor leaves the invoking state. */
  readonly signal: AbortSignal;
  /** The call's id: stable across retries, use it as an idempotency key downstream. */
  readonly callId: string;
  /** 1 for the first attempt. */
  readonly attempt: number;
  /** The calling actor, `<program>/<key>`. */
  readonly actor: string;
}

export type FunctionImpl<TInput, TOutput> = (input: TInput, ctx: CallContext) => Promise<TOutput> | TOutput;

/** A function a worker serves. The call message carries the caller's retry policy and timeout; these are the fallbacks. */
export interface FunctionHandler {
  readonly name: string;
  readonly retry: RetryPolicy;
  readonly timeoutMs: number;
  readonly impl: FunctionImpl<unknown, unknown> | undefined;
}

export interface WorkerOptions {
  /** Calls run at once per function. @default 64 */
  concurrency?: number;
  /** Called right before each attempt runs (the crash tests inject a kill here). */
  beforeRun?: () => void;
  /** Where attempts and calls in flight are reported. @default none */
  metrics?: Metrics;
}

export interface FunctionWorker extends AsyncDisposable {
  /** Stops taking calls and waits for running ones to finish. */
  drain(): Promise<void>;
  /** Stops at once; running calls are aborted and will be redelivered. */
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

/** `ack_wait` of a function's consumer: workers send in-progress acks every third of it while a call runs. */
export const workerAckWaitMs = 15_000;

/** Durable consumer name of a function's workers (dots are not allowed in consumer names). */
export function workerConsumerName(fn: string): string {
  return `fn-${fn.replace(/\./g, "_")}`;
}

function parseCall(m: JsMsg): CallMessage {
  const body = decodePayload(m.data, "json") as Partial<CallMessage> | null;
  if (!body || typeof body.callId !== "string" || typeof body.replyTo !== "string" || typeof body.fn !== "string") {
    throw new FlowmetalError(ErrorCode.MalformedPayload, "call message needs string callId, fn and replyTo");
  }
  return body as CallMessage;
}

function errorOf(err: unknown, fallbackRetryable: boolean): WireError {
  if (FlowmetalError.is(err)) {
    const w: WireError = { code: err.code, message: err.message, retryable: err.retryable };
    if (err.details) w.details = err.details;
    return w;
  }
  const message = err instanceof Error ? err.message : String(err);
  return { code: ErrorCode.FunctionFailed, message, retryable: fallbackRetryable };
}

/**
 * Starts workers for the given functions on one connection. Each function gets one durable consumer that
 * any number of worker processes share. Retryable failures are nak'ed with backoff until the call's
 * attempts are used up; a terminal failure or the last attempt becomes an error result for the actor.
 */
export async function createFunctionWorker(
  deps: { nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager; subjects: Subjects; log: Logger },
  functions: readonly FunctionHandler[],
  options: WorkerOptions = {},
): Promise<FunctionWorker> {
  const { nc, js, jsm, subjects, log } = deps;
  const concurrency = options.concurrency ?? 64;
  const running = new Map<string, AbortController>();
  const heartbeatMs = new Map<string, number>();
  const consumers = new Set<ConsumerMessages>();
  const subs: Subscription[] = [];
  const loops: Promise<void>[] = [];
  let active = 0;
  let stopping = false;
  const waiters: (() => void)[] = [];
  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));

  async function reply(call: CallMessage, result: CallResult): Promise<void> {
    const h = natsHeaders();
    h.set(Header.Kind, InboxKind.Result);
    h.set(Header.Call, call.callId);
    h.set(Header.ContentType, ContentType.Json);
    // The same result published twice is stored once; a result for a call no longer pending is dropped.
    await js.publish(call.replyTo, encodePayload(result, "json"), { msgID: `${call.callId}.result`, headers: h });
  }

  async function run(meta: FunctionHandler, m: JsMsg): Promise<void> {
    let call: CallMessage;
    try {
      call = parseCall(m);
    } catch (err) {
      log.error({ fn: meta.name, seq: m.seq, err: String(err) }, "malformed call, terminated");
      m.term();
      return;
    }
    // Results go only into the calling actor's inbox: a call naming any other subject (a caller trying to
    // have workers publish where it may not, or a subject nothing stores) is refused.
    let inbox: string | undefined;
    try {
      inbox = subjects.inbox(parseActorAddress(call.actor));
    } catch {
      inbox = undefined;
    }
    if (call.replyTo !== inbox) {
      log.error({ fn: meta.name, seq: m.seq, actor: call.actor, replyTo: call.replyTo }, "call's replyTo is not its actor's inbox, terminated");
      m.term();
      return;
    }
    const attempt = m.info.deliveryCount;
    const maxAttempts = call.retry?.maxAttempts ?? meta.retry.maxAttempts;
    if (attempt > maxAttempts) {
      // Workers died during earlier attempts: redeliveries count as attempts.
      await publishResult(call, { callId: call.callId, error: { code: ErrorCode.FunctionFailed, message: `no attempt of ${maxAttempts} finished`, retryable: false } });
      m.ack();
      return;
    }
    const timeoutMs = call.timeoutMs ?? meta.timeoutMs;
    const metrics = options.metrics ?? noMetrics;
    const t0 = performance.now();
    metrics.callsInFlight(meta.name, 1);
    const ac = new AbortController();
    running.set(call.callId, ac);
    const timer = setTimeout(() => ac.abort(new FlowmetalError(ErrorCode.FunctionTimeout, `attempt ${attempt} of '${meta.name}' took longer than ${timeoutMs} ms`)), timeoutMs);
    // Keep the message ours while the call runs longer than a fraction of ack_wait.
    const heartbeat = setInterval(() => m.working(), heartbeatMs.get(meta.name) ?? 10_000);
    // The attempt's outcome: a result to publish, or a delay before the next attempt.
    let result: CallResult | undefined;
    let retryInMs = 0;
    try {
      const impl = meta.impl;
      if (!impl) throw new FlowmetalError(ErrorCode.UnknownFunction, `function '${meta.name}' has no implementation here`, { retryable: false });
      options.beforeRun?.();
      const aborted = new Promise<never>((_, reject) => {
        if (ac.signal.aborted) reject(ac.signal.reason);
        ac.signal.addEventListener("abort", () => reject(ac.signal.reason), { once: true });
      });
      const output = await Promise.race([Promise.resolve().then(() => impl(call.input, { signal: ac.signal, callId: call.callId, attempt, actor: call.actor })), aborted]);
      result = { callId: call.callId, output: output ?? null };
    } catch (err) {
      const e = errorOf(err, true);
      const last = attempt >= maxAttempts;
      if (!e.retryable || last) {
        const message = last && e.retryable ? `${e.message} (attempt ${attempt} of ${maxAttempts}, giving up)` : e.message;
        result = { callId: call.callId, error: { ...e, message, retryable: false } };
      } else {
        // A failure may say when to come back (an HTTP 429/503's Retry-After): never sooner than that.
        const after = (err as { details?: { retryAfterMs?: unknown } } | null)?.details?.retryAfterMs;
        retryInMs = Math.max(backoffMs({ ...meta.retry, ...call.retry }, attempt), typeof after === "number" && after > 0 ? after : 0);
        log.info({ fn: meta.name, callId: call.callId, attempt, retryInMs, err: e.message }, "call failed, will retry");
      }
    } finally {
      clearTimeout(timer);
      running.delete(call.callId);
    }
    try {
      if (result) {
        // The attempt is over; publishing its result is not part of it: a failed publish is retried on its
        // own (the message kept ours by the heartbeat) instead of running the function again.
        await publishResult(call, result);
        m.ack();
        metrics.callAttempted(meta.name, "error" in result ? "failed" : "ok", performance.now() - t0);
      } else {
        m.nak(retryInMs);
        metrics.callAttempted(meta.name, "retry", performance.now() - t0);
      }
    } finally {
      clearInterval(heartbeat);
      metrics.callsInFlight(meta.name, -1);
    }
  }

  /** Publishes a result until JetStream stores it; gives up only when the worker stops (the call then comes again). */
  function publishResult(call: CallMessage, result: CallResult): Promise<void> {
    return retryWithBackoff(() => reply(call, result), {
      firstDelayMs: 100,
      giveUp: () => stopping,
      onRetry: (err, retryInMs) => log.warn({ callId: call.callId, err: String((err as Error)?.message ?? err), retryInMs }, "publishing a call result failed, retrying"),
    });
  }

  /** The function's durable consumer, shared by every worker of it: created once with the documented configuration, never rewritten. */
  async function ensureConsumer(meta: FunctionHandler): Promise<void> {
    const name = workerConsumerName(meta.name);
    let ackWaitNs: number;
    try {
      ackWaitNs = (await jsm.consumers.info(subjects.streams.calls, name)).config.ack_wait ?? workerAckWaitMs * 1_000_000;
    } catch {
      try {
        await jsm.consumers.add(subjects.streams.calls, {
          durable_name: name,
          ack_policy: AckPolicy.Explicit,
          filter_subject: subjects.call(meta.name),
          ack_wait: workerAckWaitMs * 1_000_000,
          max_deliver: -1,
          max_ack_pending: 10_000,
        });
      } catch (err) {
        if (!/already in use|exists/i.test(String((err as Error).message))) throw err;
      }
      ackWaitNs = (await jsm.consumers.info(subjects.streams.calls, name)).config.ack_wait ?? workerAckWaitMs * 1_000_000;
    }
    heartbeatMs.set(meta.name, Math.max(200, Math.min(10_000, Math.floor(ackWaitNs / 1_000_000 / 3))));
  }

  /** Makes sure of the function's consumer and starts consuming it. */
  async function openCalls(meta: FunctionHandler): Promise<ConsumerMessages> {
    await ensureConsumer(meta);
    const msgs = await (await js.consumers.get(subjects.streams.calls, workerConsumerName(meta.name))).consume({ max_messages: concurrency });
    consumers.add(msgs);
    return msgs;
  }

  /** Runs one call in a free slot (at most `concurrency` at once across this worker's functions). */
  async function take(meta: FunctionHandler, m: JsMsg): Promise<void> {
    while (active >= concurrency) await new Promise<void>((r) => waiters.push(r));
    active++;
    void run(meta, m)
      .catch((err) => log.error({ fn: meta.name, err: String(err) }, "call handling failed"))
      .finally(() => {
        active--;
        waiters.shift()?.();
        if (active === 0 && stopping) for (const w of waiters.splice(0)) w();
      });
  }

  /**
   * Takes the function's calls until the worker stops. nats.js ends a consume for good on errors it cannot
   * pull past (a pull answered 400, a refused subscription): the worker then makes sure of the consumer and
   * consumes again, after a pause that doubles up to 5 s while it keeps failing, instead of leaving the
   * function's calls unserved.
   */
  async function consumeCalls(meta: FunctionHandler, first: ConsumerMessages): Promise<void> {
    let msgs: ConsumerMessages | undefined = first;
    let pauseMs = 250;
    while (!stopping) {
      try {
        if (!msgs) {
          msgs = await openCalls(meta);
          if (stopping) msgs.stop();
        }
        for await (const m of msgs) {
          if (stopping) break;
          pauseMs = 250;
          await take(meta, m);
        }
        if (!stopping) log.error({ fn: meta.name }, "function consumer ended, consuming again");
      } catch (err) {
        if (!stopping) log.error({ fn: meta.name, err: String((err as Error)?.message ?? err), retryInMs: pauseMs }, "function consumer stopped, consuming again");
      }
      if (msgs) consumers.delete(msgs);
      msgs = undefined;
      if (stopping) return;
      await new Promise((r) => setTimeout(r, pauseMs));
      pauseMs = Math.min(5_000, pauseMs * 2);
    }
  }

  for (const meta of functions) {
    const msgs = await openCalls(meta);
    subs.push(
      nc.subscribe(subjects.cancel(meta.name), {
        callback: (err, msg) => {
          if (err) return;
          try {
            const { callId } = decodePayload(msg.data, "json") as { callId?: string };
            if (callId) running.get(callId)?.abort(new FlowmetalError(ErrorCode.FunctionFailed, "call cancelled: the actor left the invoking state", { retryable: false }));
          } catch {
            // A malformed cancel notice is ignored: cancels are best-effort.
          }
        },
      }),
    );
    loops.push(consumeCalls(meta, msgs));
  }

  async function stop(abort: boolean): Promise<void> {
    if (stopping) return closed;
    stopping = true;
    for (const c of consumers) c.stop();
    for (const s of subs) s.unsubscribe();
    if (abort) for (const ac of running.values()) ac.abort(new FlowmetalError(ErrorCode.Unavailable, "worker closing"));
    await Promise.allSettled(loops);
    while (active > 0) await new Promise<void>((r) => waiters.push(r));
    resolveClosed();
  }

  return {
    drain: () => stop(false),
    close: () => stop(true),
    closed,
    [Symbol.asyncDispose]: () => stop(false),
  };
}

export interface WorkerInit {
  /** NATS server URL(s). @default "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** The functions to serve: `{ "payments.charge": async (input, ctx) => … }`, or handlers with their own policies. */
  functions: Record<string, FunctionImpl<never, unknown>> | readonly (Partial<FunctionHandler> & { name: string; impl: FunctionImpl<never, unknown> })[];
  concurrency?: number;
  log?: Logger;
}

/** A standalone worker process's handle: its connection and its function consumers. */
export interface Worker extends FunctionWorker {
  readonly functions: readonly string[];
}

/**
 * Connects to NATS and serves functions that Flowmetal programs invoke (`functionRef(name)` in the program).
 * Any number of workers may serve the same function; each call goes to one of them.
 * @example
 * await using w = await createWorker({ servers: "nats://127.0.0.1:4222", functions: { "pdf.render": async (input) => render(input) } });
 */
export async function createWorker(init: WorkerInit): Promise<Worker> {
  const { jetstream, jetstreamManager } = await import("@nats-io/jetstream");
  const { createSubjects, parseFunctionName } = await import("./subjects.js");
  const { resolveRetryPolicy } = await import("./retry.js");
  const { silentLogger } = await import("./logger.js");
  const list = Array.isArray(init.functions)
    ? init.functions
    : Object.entries(init.functions as Record<string, FunctionImpl<never, unknown>>).map(([name, impl]) => ({ name, impl }));
  const handlers: FunctionHandler[] = list.map((f) => ({
    name: parseFunctionName(f.name),
    impl: f.impl as FunctionImpl<unknown, unknown>,
    retry: resolveRetryPolicy(f.retry),
    timeoutMs: f.timeoutMs ?? 30_000,
  }));
  if (handlers.length === 0) throw new FlowmetalError(ErrorCode.BadRequest, "a worker needs at least one function");
  const { connectNats } = await import("./connect.js");
  const nc: NatsConnection = await connectNats(init.servers, { name: "flowmetal-worker", reconnectForever: true });
  const subjects = createSubjects(init.prefix);
  const jsm = await jetstreamManager(nc);
  try {
    await jsm.streams.info(subjects.streams.calls);
  } catch (err) {
    await nc.close();
    throw new FlowmetalError(ErrorCode.Unavailable, `stream ${subjects.streams.calls} does not exist yet: start a Flowmetal node first`, { cause: err });
  }
  const w = await createFunctionWorker({ nc, js: jetstream(nc), jsm, subjects, log: init.log ?? silentLogger }, handlers, init.concurrency ? { concurrency: init.concurrency } : {});
  const stop = async (how: "drain" | "close") => {
    await w[how]();
    await nc.drain().catch(() => undefined);
  };
  return {
    functions: handlers.map((h) => h.name),
    drain: () => stop("drain"),
    close: () => stop("close"),
    closed: w.closed,
    [Symbol.asyncDispose]: () => stop("drain"),
  };
}
