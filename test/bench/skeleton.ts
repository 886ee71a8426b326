// test/bench/skeleton.ts — a reference point between raw publishes and Flowmetal: the JetStream I/O of a step
// with no Flowmetal code. Inputs sit in a work-queue stream partitioned like FM_IN, one consumer per partition
// delivers them (in its callback, as a node's shards take them), each key's inputs are handled one at a time
// (a fenced append of a journal-sized record with Nats-Msg-Id and expected-last-subject-sequence through the
// node's own publisher, then the ack), keys in parallel. No XState, no codec, no state notice: what is left is
// the cost of the pattern itself, the most any implementation of a step on this client could do.
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType, jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager, type JsMsg } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { AckedPublisher } from "../../node/publisher.js";
import { performance } from "node:perf_hooks";
import { cpuMeter, cpuPerOp, pipelined, round, type CpuShare } from "./util.js";

export interface SkeletonResult {
  keys: number;
  perKey: number;
  steps: number;
  partitions: number;
  recordBytes: number;
  seconds: number;
  stepsPerSec: number;
  cpu: CpuShare;
  cpuPerStep: { processUs: number; serverUs: number | null };
}

export async function benchSkeleton(
  url: string,
  js: JetStreamClient,
  jsm: JetStreamManager,
  opts: {
    keys: number;
    perKey: number;
    partitions: number;
    recordBytes: number;
    window: number;
    maxInFlight: number;
    /**
     * Live load: given the subject prefix of the inputs (keys `0`…`keys - 1` follow it), prepares a publisher
     * and returns its start, called when the clock starts. Without it the inputs are queued first.
     */
    live?: (subjectPrefix: string) => Promise<() => Promise<unknown>>;
  },
): Promise<SkeletonResult> {
  const { keys, perKey, partitions } = opts;
  const total = keys * perKey;
  await jsm.streams.add({
    name: "BENCH_SK_IN",
    subjects: ["bench.sk.in.*"],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    subject_transform: { src: "bench.sk.in.*", dest: `bench.sk.inbox.{{partition(${partitions},1)}}.{{wildcard(1)}}` },
  });
  await jsm.streams.add({ name: "BENCH_SK_LOG", subjects: ["bench.sk.log.*"], storage: StorageType.File, retention: RetentionPolicy.Limits });
  const event = new TextEncoder().encode(JSON.stringify({ type: "INC" }));
  if (!opts.live) await pipelined(total, opts.window, (i) => js.publish(`bench.sk.in.k${i % keys}`, event, { timeout: 30_000 }));
  const startLoad = opts.live ? await opts.live("bench.sk.in.k") : undefined;

  // The "node" gets its own connection, as a Flowmetal node does.
  const nc = await connect({ servers: url, name: "bench-skeleton", noAsyncTraces: true });
  try {
    const njs = jetstream(nc);
    const njsm = await jetstreamManager(nc);
    const publisher = new AckedPublisher(nc);
    const record = new Uint8Array(opts.recordBytes).fill(0x61);
    const lastSeq = new Map<string, number>();
    const queues = new Map<string, JsMsg[]>();
    let done = 0;
    let finish!: () => void;
    let fail!: (err: unknown) => void;
    const finished = new Promise<void>((resolve, reject) => {
      finish = resolve;
      fail = reject;
    });
    const drainKey = async (key: string, q: JsMsg[]) => {
      while (q.length > 0) {
        const m = q[0]!;
        const ack = await publisher.publish(`bench.sk.log.${key}`, record, { msgID: `${key}.${m.seq}`, expect: { lastSubjectSequence: lastSeq.get(key) ?? 0 }, timeout: 30_000 });
        lastSeq.set(key, ack.seq);
        m.ack();
        q.shift();
        if (++done === total) finish();
      }
      queues.delete(key);
    };
    const stops: (() => void)[] = [];
    const take = (m: JsMsg) => {
      const key = m.subject.slice(m.subject.lastIndexOf(".") + 1);
      const q = queues.get(key);
      if (q) q.push(m);
      else {
        const nq = [m];
        queues.set(key, nq);
        drainKey(key, nq).catch(fail);
      }
    };
    const open = async () => {
      for (let p = 0; p < partitions; p++) {
        await njsm.consumers.add("BENCH_SK_IN", {
          durable_name: `sk-${p}`,
          ack_policy: AckPolicy.Explicit,
          deliver_policy: DeliverPolicy.All,
          filter_subject: `bench.sk.inbox.${p}.>`,
          max_ack_pending: Math.max(opts.maxInFlight * 2, 1000),
        });
        const messages = await (await njs.consumers.get("BENCH_SK_IN", `sk-${p}`)).consume({ max_messages: opts.maxInFlight, callback: take });
        stops.push(() => messages.stop());
      }
    };
    // Live: consumers first, and the clock starts with the first publish. Queued: the clock starts with the consumers.
    if (startLoad) await open();
    const cpu = cpuMeter();
    const t0 = performance.now();
    if (startLoad) void startLoad().catch(fail);
    else await open();
    const timeout = setTimeout(() => fail(new Error(`bench: skeleton did not finish (${done}/${total})`)), 300_000);
    await finished;
    clearTimeout(timeout);
    const seconds = (performance.now() - t0) / 1000;
    const share = cpu();
    for (const stop of stops) stop();
    publisher.close();
    return { keys, perKey, steps: total, partitions, recordBytes: opts.recordBytes, seconds: round(seconds, 2), stepsPerSec: round(total / seconds), cpu: share, cpuPerStep: cpuPerOp(share, total) };
  } finally {
    await nc.close();
    await jsm.streams.delete("BENCH_SK_IN");
    await jsm.streams.delete("BENCH_SK_LOG");
  }
}
