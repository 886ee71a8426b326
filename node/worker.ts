// node/worker.ts — function workers: consume calls from fm.fx.call.<fn>, run them with timeout and retries, reply to the caller's inbox.
import { AckPolicy, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { headers as natsHeaders, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { decodePayload, encodePayload } from "../protocol/codec.js";
import { ErrorCode, FlowmetalError, type WireError } from "../protocol/errors.js";
import type { CallMessage, CallResult } from "../protocol/records.js";
import { ContentType, Header, InboxKind, type Subjects } from "../protocol/subjects.js";
import { failpoint } from "./failpoints.js";
import type { Logger } from "./logger.js";
import { backoffMs, type FunctionMeta } from "./program.js";

export interface WorkerOptions {
  /** Calls run at once per function. @default 64 */
  concurrency?: number;
}

export interface FunctionWorker extends AsyncDisposable {
  /** Stops taking calls and waits for running ones to finish. */
  drain(): Promise<void>;
  /** Stops at once; running calls are aborted and will be redelivered. */
  close(): Promise<void>;
  readonly closed: Promise<void>;
}

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
  if (FlowmetalError.is(err)) return { code: err.code, message: err.message, retryable: err.retryable };
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
  functions: readonly FunctionMeta[],
  options: WorkerOptions = {},
): Promise<FunctionWorker> {
  const { nc, js, jsm, subjects, log } = deps;
  const concurrency = options.concurrency ?? 64;
  const running = new Map<string, AbortController>();
  const consumers: ConsumerMessages[] = [];
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

  async function run(meta: FunctionMeta, m: JsMsg): Promise<void> {
    let call: CallMessage;
    try {
      call = parseCall(m);
    } catch (err) {
      log.error({ fn: meta.name, seq: m.seq, err: String(err) }, "malformed call, terminated");
      m.term();
      return;
    }
    const attempt = m.info.deliveryCount;
    const maxAttempts = call.retry?.maxAttempts ?? meta.retry.maxAttempts;
    if (attempt > maxAttempts) {
      // Workers died during earlier attempts: redeliveries count as attempts.
      await reply(call, { callId: call.callId, error: { code: ErrorCode.FunctionFailed, message: `no attempt of ${maxAttempts} finished`, retryable: false } });
      m.ack();
      return;
    }
    const timeoutMs = call.timeoutMs ?? meta.timeoutMs;
    const ac = new AbortController();
    running.set(call.callId, ac);
    const timer = setTimeout(() => ac.abort(new FlowmetalError(ErrorCode.FunctionTimeout, `attempt ${attempt} of '${meta.name}' took longer than ${timeoutMs} ms`)), timeoutMs);
    // Keep the message ours while the call runs longer than a fraction of ack_wait.
    const heartbeat = setInterval(() => m.working(), 10_000);
    try {
      const impl = meta.impl;
      if (!impl) throw new FlowmetalError(ErrorCode.UnknownFunction, `function '${meta.name}' has no implementation here`, { retryable: false });
      failpoint("mid-call");
      const aborted = new Promise<never>((_, reject) => {
        if (ac.signal.aborted) reject(ac.signal.reason);
        ac.signal.addEventListener("abort", () => reject(ac.signal.reason), { once: true });
      });
      const output = await Promise.race([Promise.resolve().then(() => impl(call.input, { signal: ac.signal, callId: call.callId, attempt, actor: call.actor })), aborted]);
      await reply(call, { callId: call.callId, output: output ?? null });
      m.ack();
    } catch (err) {
      const e = errorOf(err, true);
      const last = attempt >= maxAttempts;
      if (!e.retryable || last) {
        const message = last && e.retryable ? `${e.message} (attempt ${attempt} of ${maxAttempts}, giving up)` : e.message;
        await reply(call, { callId: call.callId, error: { ...e, message, retryable: false } });
        m.ack();
      } else {
        const delay = backoffMs({ ...meta.retry, ...call.retry }, attempt);
        log.info({ fn: meta.name, callId: call.callId, attempt, retryInMs: delay, err: e.message }, "call failed, will retry");
        m.nak(delay);
      }
    } finally {
      clearTimeout(timer);
      clearInterval(heartbeat);
      running.delete(call.callId);
    }
  }

  for (const meta of functions) {
    const name = workerConsumerName(meta.name);
    const ackWaitMs = meta.timeoutMs + 30_000;
    try {
      await jsm.consumers.add(subjects.streams.calls, {
        durable_name: name,
        ack_policy: AckPolicy.Explicit,
        filter_subject: subjects.call(meta.name),
        ack_wait: ackWaitMs * 1_000_000,
        max_deliver: -1,
        max_ack_pending: 10_000,
      });
    } catch (err) {
      if (!/already in use|exists/i.test(String((err as Error).message))) throw err;
    }
    const consumer = await js.consumers.get(subjects.streams.calls, name);
    const msgs = await consumer.consume({ max_messages: concurrency });
    consumers.push(msgs);
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
    loops.push(
      (async () => {
        for await (const m of msgs) {
          if (stopping) break;
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
      })(),
    );
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
