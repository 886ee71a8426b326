// node/index-projector/lag.ts — how far the actor index is behind the journal, from the journal stream and the projector's consumer.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { IndexLag } from "../../protocol/records.js";
import type { Subjects } from "../../protocol/subjects.js";
import { indexConsumer } from "./entry.js";

export type { IndexLag };

/** Reads the index lag: two JetStream API calls. */
export async function readIndexLag(jsm: JetStreamManager, subjects: Subjects): Promise<IndexLag> {
  const [stream, consumer] = await Promise.all([
    jsm.streams.info(subjects.streams.journal),
    jsm.consumers.info(subjects.streams.journal, indexConsumer).catch((err: unknown) => {
      if (/not found/i.test(String((err as Error)?.message ?? err))) return undefined;
      throw err;
    }),
  ]);
  const lastSeq = stream.state.last_seq;
  if (!consumer) return { records: stream.state.messages, lastSeq, projectedSeq: 0, running: false };
  const projectedSeq = Math.max(consumer.ack_floor.stream_seq, stream.state.first_seq - 1, 0);
  return { records: consumer.num_pending + consumer.num_ack_pending, lastSeq, projectedSeq, running: true };
}
