// node/streams.ts — creates (or checks) the JetStream streams Flowmetal stores everything in.
import { DiscardPolicy, RetentionPolicy, StorageType, type JetStreamManager, type StreamConfig } from "@nats-io/jetstream";
import { whenAvailable } from "../protocol/connect.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import type { Subjects } from "../protocol/subjects.js";

export interface StreamOptions {
  /** Shards the inbox is partitioned into; fixed once the streams exist. @default 16 */
  shards?: number;
  /** Replicas of every stream: 1 for one server, 3 in a cluster. @default 1 */
  replicas?: number;
  /** How long JetStream remembers a `Nats-Msg-Id` for dedupe. @default 120000 */
  duplicateWindowMs?: number;
  /** How long emitted events stay on `fm.out`. @default 7 days */
  outMaxAgeMs?: number;
  /** Largest message the streams accept. @default 8 MiB */
  maxMsgBytes?: number;
}

const nanos = (ms: number) => ms * 1_000_000;

/** The inbox stream's partition transform: senders publish to `fm.in.<program>.<key>`, shards read `fm.inbox.<shard>.…`. */
export function inboxTransform(subjects: Subjects, shards: number) {
  const p = subjects.prefix;
  return { src: `${p}.in.*.*`, dest: `${p}.inbox.{{partition(${shards},1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}` };
}

/** Reads the shard count back from an existing inbox stream; undefined if it does not exist. */
export async function readShardCount(jsm: JetStreamManager, subjects: Subjects): Promise<number | undefined> {
  try {
    const info = await jsm.streams.info(subjects.streams.inbox);
    const m = /partition\((\d+),/.exec(info.config.subject_transform?.dest ?? "");
    return m ? Number(m[1]) : undefined;
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

function isNotFound(err: unknown): boolean {
  return /not found/i.test(String((err as Error)?.message ?? err));
}

/**
 * Makes sure every stream exists with the expected configuration. Idempotent; refuses to change the shard
 * count of existing streams (that would move actors between shards under running consumers).
 * @returns the shard count in force.
 */
export async function ensureStreams(jsm: JetStreamManager, subjects: Subjects, options: StreamOptions = {}): Promise<number> {
  const existing = await whenAvailable(() => readShardCount(jsm, subjects));
  const shards = options.shards ?? existing ?? 16;
  if (!Number.isInteger(shards) || shards < 1 || shards > 1024) {
    throw new FlowmetalError(ErrorCode.BadRequest, `shards must be an integer from 1 to 1024, got ${shards}`);
  }
  if (existing !== undefined && existing !== shards) {
    throw new FlowmetalError(
      ErrorCode.BadRequest,
      `the inbox stream already has ${existing} shards; it cannot be changed to ${shards} (omit shards to use the existing count)`,
    );
  }
  const replicas = options.replicas ?? 1;
  const common: Partial<StreamConfig> = {
    storage: StorageType.File,
    num_replicas: replicas,
    duplicate_window: nanos(options.duplicateWindowMs ?? 120_000),
    max_msg_size: options.maxMsgBytes ?? 8 * 1024 * 1024,
    allow_direct: true,
    discard: DiscardPolicy.Old,
  };
  const p = subjects.prefix;
  const configs: (Partial<StreamConfig> & { name: string })[] = [
    {
      ...common,
      name: subjects.streams.inbox,
      subjects: [`${p}.in.*.*`, `${p}.timer.>`],
      retention: RetentionPolicy.Workqueue,
      // Workqueue: an inbox message lives until its step is persisted and acked, then it is in the journal.
      allow_msg_schedules: true,
      subject_transform: inboxTransform(subjects, shards),
    },
    { ...common, name: subjects.streams.journal, subjects: [`${p}.log.>`], retention: RetentionPolicy.Limits, max_msgs_per_subject: -1 },
    { ...common, name: subjects.streams.calls, subjects: [`${p}.fx.call.>`], retention: RetentionPolicy.Workqueue, discard: DiscardPolicy.New },
    { ...common, name: subjects.streams.out, subjects: [`${p}.out.>`], retention: RetentionPolicy.Limits, max_age: nanos(options.outMaxAgeMs ?? 7 * 86_400_000) },
    { ...common, name: subjects.streams.dead, subjects: [`${p}.dead.>`], retention: RetentionPolicy.Limits, max_age: nanos(30 * 86_400_000) },
  ];
  for (const cfg of configs) {
    try {
      await whenAvailable(() => jsm.streams.add(cfg));
    } catch (err) {
      if (!/already in use/i.test(String((err as Error).message))) {
        throw new FlowmetalError(ErrorCode.Unavailable, `could not create stream ${cfg.name}: ${(err as Error).message}`, { cause: err });
      }
      await whenAvailable(() => jsm.streams.update(cfg.name, cfg));
    }
  }
  return shards;
}
