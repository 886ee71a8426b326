// cluster/api.ts — cluster verbs on fm.api.*: cluster, move, unpin, drain; served by every node.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection, Subscription } from "@nats-io/transport-node";
import { decodePayload, encodePayload } from "../protocol/codec.js";
import { ErrorCode, FlowmetalError, toWireError } from "../protocol/errors.js";
import type { ApiReply } from "../protocol/records.js";
import { ApiVerb, type Subjects } from "../protocol/subjects.js";
import type { Logger } from "../node/logger.js";
import { clusterView, moveShard, setDraining, unpinShard } from "./ops.js";
import type { ClusterBuckets } from "./state.js";


function str(body: Record<string, unknown>, name: string): string {
  const v = body[name];
  if (typeof v !== "string" || v.length === 0) throw new FlowmetalError(ErrorCode.BadRequest, `missing string field '${name}'`);
  return v;
}

/** Serves the cluster verbs; returns a function that stops serving. */
export function serveClusterApi(deps: { nc: NatsConnection; jsm: JetStreamManager; subjects: Subjects; buckets: ClusterBuckets; log: Logger }): () => Promise<void> {
  const { nc, jsm, subjects, buckets, log } = deps;
  const handlers: Record<string, (b: Record<string, unknown>) => Promise<unknown>> = {
    [ApiVerb.Cluster]: () => clusterView(buckets),
    [ApiVerb.Move]: (b) => moveShard(buckets, jsm, subjects, str(b, "target"), str(b, "node"), typeof b.timeoutMs === "number" ? b.timeoutMs : undefined),
    [ApiVerb.Unpin]: (b) => unpinShard(buckets, str(b, "target")),
    [ApiVerb.Drain]: (b) => setDraining(buckets, str(b, "node"), b.undo === true),
  };
  const subs: Subscription[] = Object.entries(handlers).map(([verb, h]) =>
    nc.subscribe(subjects.api(verb), {
      queue: `${subjects.prefix}-api`,
      callback: (err, m) => {
        if (err) return;
        void (async () => {
          let reply: ApiReply<unknown>;
          try {
            const body = m.data.length ? decodePayload(m.data, "json") : {};
            if (typeof body !== "object" || body === null || Array.isArray(body)) throw new FlowmetalError(ErrorCode.BadRequest, "request body must be a JSON object");
            reply = { ok: true, result: await h(body as Record<string, unknown>) };
          } catch (e) {
            if (!FlowmetalError.is(e)) log.error({ verb, err: String((e as Error)?.stack ?? e) }, "cluster api request failed");
            reply = { ok: false, error: toWireError(e) };
          }
          m.respond(encodePayload(reply, "json"));
        })();
      },
    }),
  );
  return async () => {
    await Promise.allSettled(subs.map((s) => s.drain()));
  };
}
