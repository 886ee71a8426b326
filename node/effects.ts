// node/effects.ts — publishes a persisted step's effects, each deduped downstream by its effect id.
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { encodePayload } from "../protocol/codec.js";
import type { Publisher } from "./publisher.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import type { CallMessage, Effect, StepRecord } from "../protocol/records.js";
import { ContentType, Header, InboxKind, formatAddress, parseActorAddress, type ActorAddress, type Subjects } from "../protocol/subjects.js";

export interface EffectPublisher {
  /**
   * Publishes every effect of `rec`. Safe to call again for the same record (after a crash or a failed
   * attempt): each publish carries `Nats-Msg-Id` = effect id, purges and cancels are idempotent.
   */
  publish(a: ActorAddress, rec: StepRecord, options?: { republish?: boolean }): Promise<void>;
}

/** `[step, index]` of an effect id `<program>.<key>.<step>.<index>`. */
export function effectPosition(effectId: string): [number, number] | undefined {
  const parts = effectId.split(".");
  const step = Number(parts[2]);
  const index = Number(parts[3]);
  return parts.length === 4 && Number.isInteger(step) && Number.isInteger(index) ? [step, index] : undefined;
}

function atOrBefore(x: [number, number], y: [number, number]): boolean {
  return x[0] < y[0] || (x[0] === y[0] && x[1] <= y[1]);
}

const json = (v: unknown) => encodePayload(v, "json");

/** `publisher` carries emits, sends and calls (the hot path); `js` the schedules, which need its schedule headers. */
export function createEffectPublisher(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, subjects: Subjects, publisher: Publisher = js): EffectPublisher {
  function publishOne(a: ActorAddress, e: Effect): Promise<unknown> {
    const h = natsHeaders();
    h.set(Header.Effect, e.id);
    h.set(Header.ContentType, ContentType.Json);
    switch (e.kind) {
      case "emit":
        return publisher.publish(subjects.out(a), json(e.event), { msgID: e.id, headers: h });
      case "send": {
        const to = parseActorAddress(e.to);
        h.set(Header.Kind, InboxKind.Send);
        h.set(Header.From, formatAddress(a));
        return publisher.publish(subjects.inbox(to), json(e.event), { msgID: e.id, headers: h });
      }
      case "schedule": {
        h.set(Header.Kind, InboxKind.Timer);
        h.set(Header.Timer, encodeURIComponent(e.timer));
        h.set(Header.TimerGen, String(e.gen));
        return js.publish(subjects.timer(a, e.token), json(e.event), {
          msgID: e.id,
          headers: h,
          schedule: { specification: new Date(e.dueMs), target: subjects.inbox(a) },
        });
      }
      case "unschedule":
        return jsm.streams.purge(subjects.streams.inbox, { filter: subjects.timer(a, e.token) });
      case "call": {
        const body: CallMessage = {
          callId: e.id,
          fn: e.fn,
          input: e.input,
          actor: formatAddress(a),
          replyTo: subjects.inbox(a),
          retry: e.retry,
          timeoutMs: e.timeoutMs,
        };
        h.set(Header.Call, e.id);
        return publisher.publish(subjects.call(e.fn), json(body), { msgID: e.id, headers: h });
      }
      case "cancel":
        // Best-effort notice to a worker running the call; a late result is dropped by the step engine.
        nc.publish(subjects.cancel(e.fn), json({ callId: e.callId }));
        return Promise.resolve();
    }
  }

  /** Position of the actor's last emitted event on `fm.out`, so a republish after a long outage skips what is there. */
  async function lastEmitted(a: ActorAddress): Promise<[number, number] | undefined> {
    const m = await jsm.direct.getMessage(subjects.streams.out, { last_by_subj: subjects.out(a) }).catch(() => null);
    const id = m?.header?.get(Header.Effect);
    return id ? effectPosition(id) : undefined;
  }

  return {
    async publish(a, rec, options = {}) {
      if (rec.effects.length === 0) return;
      let effects = rec.effects;
      if (options.republish && effects.some((e) => e.kind === "emit")) {
        // JetStream dedupes only within its window; emits already on fm.out (they are in order) are skipped.
        const last = await lastEmitted(a);
        if (last) effects = effects.filter((e) => e.kind !== "emit" || !atOrBefore(effectPosition(e.id) ?? [Infinity, 0], last));
      }
      // Publishes on one connection reach the server in order, so they can be in flight together.
      const results = await Promise.allSettled(effects.map((e) => publishOne(a, e)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) {
        throw new FlowmetalError(ErrorCode.Unavailable, `publishing effects of ${formatAddress(a)} step ${rec.step} failed: ${String((failed.reason as Error)?.message ?? failed.reason)}`, { cause: failed.reason });
      }
    },
  };
}
