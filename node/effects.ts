// node/effects.ts — publishes a persisted step's effects, each deduped downstream by its effect id.
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import { encodePayload } from "../protocol/codec.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import type { CallMessage, Effect, StepRecord } from "../protocol/records.js";
import { ContentType, Header, InboxKind, formatAddress, parseActorAddress, type ActorAddress, type Subjects } from "../protocol/subjects.js";

export interface EffectPublisher {
  /**
   * Publishes every effect of `rec`. Safe to call again for the same record (after a crash or a failed
   * attempt): each publish carries `Nats-Msg-Id` = effect id, purges and cancels are idempotent.
   */
  publish(a: ActorAddress, rec: StepRecord): Promise<void>;
}

const json = (v: unknown) => encodePayload(v, "json");

export function createEffectPublisher(nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, subjects: Subjects): EffectPublisher {
  function publishOne(a: ActorAddress, e: Effect): Promise<unknown> {
    const h = natsHeaders();
    h.set(Header.Effect, e.id);
    h.set(Header.ContentType, ContentType.Json);
    switch (e.kind) {
      case "emit":
        return js.publish(subjects.out(a), json(e.event), { msgID: e.id, headers: h });
      case "send": {
        const to = parseActorAddress(e.to);
        h.set(Header.Kind, InboxKind.Send);
        h.set(Header.From, formatAddress(a));
        return js.publish(subjects.inbox(to), json(e.event), { msgID: e.id, headers: h });
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
        return js.publish(subjects.call(e.fn), json(body), { msgID: e.id, headers: h });
      }
      case "cancel":
        // Best-effort notice to a worker running the call; a late result is dropped by the step engine.
        nc.publish(subjects.cancel(e.fn), json({ callId: e.callId }));
        return Promise.resolve();
    }
  }

  return {
    async publish(a, rec) {
      if (rec.effects.length === 0) return;
      // Publishes on one connection reach the server in order, so they can be in flight together.
      const results = await Promise.allSettled(rec.effects.map((e) => publishOne(a, e)));
      const failed = results.find((r): r is PromiseRejectedResult => r.status === "rejected");
      if (failed) {
        throw new FlowmetalError(ErrorCode.Unavailable, `publishing effects of ${formatAddress(a)} step ${rec.step} failed: ${String((failed.reason as Error)?.message ?? failed.reason)}`, { cause: failed.reason });
      }
    },
  };
}
