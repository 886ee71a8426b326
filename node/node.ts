// node/node.ts — a Flowmetal node: streams, shard runners for the shards it owns, function workers and the API.
import { hostname } from "node:os";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../protocol/connect.js";
import { resolveDecodeLimits, type DecodeLimits } from "../protocol/codec.js";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import { noMetrics, type Metrics } from "../protocol/metrics.js";
import { createSubjects } from "../protocol/subjects.js";
import { createApiService, type ApiService } from "./api.js";
import { createEffectPublisher } from "./effects.js";
import { AckedPublisher } from "./publisher.js";
import { ShardRunner, type HostOptions } from "./host.js";
import { collect, type LoadedModules } from "./loader.js";
import { silentLogger, type Logger } from "./logger.js";
import { createFunctionWorker, type FunctionWorker } from "../protocol/worker.js";
import { failpoint } from "./failpoints.js";
import { ensureStreams, type StreamOptions } from "./streams.js";
import type { IndexViewSource } from "./index-projector/view.js";

/** A change in which shards this node owns. */
export interface ShardEvent {
  shard: number;
  epoch: number;
  owned: boolean;
}

/**
 * The seam through which the cluster decides which shards a node runs. The node only obeys: it starts a
 * runner for each shard it is given and stops it when told (or when JetStream fences it off).
 */
export interface Placement {
  /** Ownership changes for `node`, starting with the current set; ends when the node closes. */
  watch(node: string, shards: number): AsyncIterable<ShardEvent>;
  /** Told once a shard the placement took away (`owned: false`) has stopped: its in-flight steps and effects are done. */
  released?(shard: number, epoch: number): void;
  /** Told when a runner was fenced off (a newer owner appended, or its lease ran out). */
  fenced?(shard: number, epoch: number): void;
  /**
   * Asked before every journal append: may this node still write for `shard` at `epoch`? `true`: yes;
   * `"wait"`: the shard is still this node's but its lease has lapsed (a slow heartbeat), try again shortly;
   * `false`: ownership moved on. A cheap, local check: JetStream's fence stays the last word, this only keeps
   * a paused or cut-off owner from trying.
   */
  canAppend?(shard: number, epoch: number): boolean | "wait";
  /** Called after every runner has stopped at shutdown: give the shards back. */
  close?(): Promise<void>;
}

/** One node owns every shard at epoch 1: the single-machine placement. */
export function singleNodePlacement(): Placement {
  return {
    async *watch(_node, shards) {
      for (let shard = 0; shard < shards; shard++) yield { shard, epoch: 1, owned: true };
    },
  };
}

export interface NodeOptions extends StreamOptions {
  /** NATS server URL(s), comma-separated or an array, credentials allowed; ignored when `nc` is given. @default "nats://127.0.0.1:4222" */
  servers?: string | string[];
  /** An open connection (the node then does not close it). */
  nc?: NatsConnection;
  /** Programs and functions to run: values exported by modules (see `loadModules`). */
  modules: Iterable<unknown>;
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** Node name, recorded in each step. @default `<hostname>-<pid>` */
  name?: string;
  /** Where shard ownership comes from. @default singleNodePlacement() */
  placement?: Placement;
  /** Run in-process workers for the functions in `modules`. @default true */
  runFunctions?: boolean;
  /** Payload limits for inputs. */
  limits?: Partial<DecodeLimits>;
  log?: Logger;
  /** Where the runtime reports steps, effects, calls and shards (see node/metrics.ts for Prometheus). @default none */
  metrics?: Metrics;
  /** The actor index that answers `fm.api.list` and `stats` (share one with the admin server). @default opened on the first such request */
  index?: IndexViewSource;
  /** Idle actors are dropped from memory after this long. @default 30000 */
  passivateAfterMs?: number;
  /** At most this many actors in memory on this node (spread over its shards); idle ones go first. @default 10000 */
  maxActiveActors?: number;
  /** Inbox messages in flight per shard. @default 512 */
  maxInFlight?: number;
  /** Inbox ack wait: an unacked input is redelivered after it. @default 60000 */
  ackWaitMs?: number;
}

export interface FlowmetalNode extends AsyncDisposable {
  readonly name: string;
  readonly programs: readonly string[];
  readonly functions: readonly string[];
  /** Actors held in memory right now (idle ones are passivated). */
  activeActors(): number;
  /** Shards this node runs right now. */
  ownedShards(): number[];
  /** Stops intake, finishes steps in flight (their effects go out), closes. */
  drain(): Promise<void>;
  /** Same as drain: a step in flight is short, so there is nothing faster that is also safe. */
  close(): Promise<void>;
  /** Resolves when the node has stopped; never rejects. */
  readonly closed: Promise<void>;
}

/**
 * Starts a node.
 * @example
 * const node = await createNode({ servers: "nats://127.0.0.1:4222", modules: Object.values(await import("./order.js")) });
 */
export async function createNode(options: NodeOptions): Promise<FlowmetalNode> {
  const log = options.log ?? silentLogger;
  const name = options.name ?? `${hostname()}-${process.pid}`;
  const loaded: LoadedModules = { programs: new Map(), functions: new Map(), exports: [] };
  collect(options.modules, loaded, "options.modules");
  if (loaded.programs.size === 0 && loaded.functions.size === 0) {
    throw new FlowmetalError(ErrorCode.InvalidModule, "no programs or functions given: pass the exports of modules using defineProgram/defineFunction");
  }
  const own = !options.nc;
  const nc: NatsConnection = options.nc ?? (await connectNats(options.servers, { name: `flowmetal-node-${name}`, reconnectForever: true }));
  const subjects = createSubjects(options.prefix);
  const js = jetstream(nc);
  const jsm = await jetstreamManager(nc);
  let shards: number;
  try {
    shards = await ensureStreams(jsm, subjects, options);
  } catch (err) {
    if (own) await nc.close();
    throw err;
  }
  const limits = resolveDecodeLimits(options.limits);
  const hostOptions: HostOptions = {
    node: name,
    passivateAfterMs: options.passivateAfterMs ?? 30_000,
    // The option is per node; each shard runner keeps its share.
    maxActiveActors: Math.max(1, Math.ceil((options.maxActiveActors ?? 10_000) / shards)),
    maxInFlight: options.maxInFlight ?? 512,
    ackWaitMs: options.ackWaitMs ?? 60_000,
    limits,
  };
  const publisher = new AckedPublisher(nc);
  const effects = createEffectPublisher(nc, js, jsm, subjects, publisher);
  const metrics = options.metrics ?? noMetrics;
  const deps = { nc, js, publisher, jsm, subjects, programs: loaded.programs, effects, log, options: hostOptions, metrics };
  const runners = new Map<number, ShardRunner>();
  const placement = options.placement ?? singleNodePlacement();
  let closing = false;

  const api: ApiService = createApiService({ nc, js, jsm, subjects, programs: loaded.programs, functions: [...loaded.functions.keys()], limits, log, ...(options.index ? { index: options.index } : {}) });
  const worker: FunctionWorker | undefined =
    options.runFunctions === false || loaded.functions.size === 0
      ? undefined
      : await createFunctionWorker({ nc, js, jsm, subjects, log }, [...loaded.functions.values()], { beforeRun: () => failpoint("mid-call"), metrics });

  const onFenced = (shard: number) => {
    const r = runners.get(shard);
    if (!r) return;
    runners.delete(shard);
    void r.drain();
    placement.fenced?.(shard, r.epoch);
  };

  // The first batch of ownership is applied before createNode resolves, so a new node is ready at once.
  const iterator = placement.watch(name, shards)[Symbol.asyncIterator]();
  const apply = async (ev: ShardEvent) => {
    const current = runners.get(ev.shard);
    if (current && (!ev.owned || current.epoch !== ev.epoch)) {
      runners.delete(ev.shard);
      await current.drain();
      metrics.shardRunning(ev.shard, false);
      placement.released?.(ev.shard, current.epoch);
    } else if (!current && !ev.owned) {
      // No runner (its start failed, or it was fenced): nothing is in flight, so the shard can be let go now.
      // Without this a handoff asked for while the runner was starting would wait for a release that never comes.
      placement.released?.(ev.shard, ev.epoch);
    }
    if (ev.owned && !runners.has(ev.shard) && !closing) {
      const r = new ShardRunner(ev.shard, ev.epoch, deps, onFenced, placement.canAppend ? (sh, ep) => placement.canAppend!(sh, ep) : undefined);
      runners.set(ev.shard, r);
      try {
        await r.start();
        metrics.shardRunning(ev.shard, true);
        log.debug({ shard: ev.shard, epoch: ev.epoch }, "shard started");
      } catch (err) {
        // E.g. a newer owner replaced the consumer meanwhile: give the shard back to the placement to decide again.
        log.warn({ shard: ev.shard, epoch: ev.epoch, err: String((err as Error)?.message ?? err) }, "shard did not start");
        runners.delete(ev.shard);
        await r.drain().catch(() => undefined);
        placement.fenced?.(ev.shard, ev.epoch);
      }
    }
  };
  const watching = (async () => {
    for (;;) {
      const n = await iterator.next();
      if (n.done || closing) return;
      await apply(n.value).catch((err) => log.error({ shard: n.value.shard, err: String(err) }, "shard change failed"));
    }
  })().catch((err) => log.error({ err: String(err) }, "placement watch failed"));
  // Wait until the initial shards are running (single-node placement yields them all at once).
  while (runners.size < shards && options.placement === undefined) await new Promise((r) => setTimeout(r, 5));

  let resolveClosed!: () => void;
  const closed = new Promise<void>((r) => (resolveClosed = r));
  let closingPromise: Promise<void> | undefined;
  const drain = () => {
    closingPromise ??= (async () => {
      closing = true;
      // Not awaited: a placement's watch may be waiting for its next event; close() below ends it.
      void iterator.return?.();
      await api.drain();
      await Promise.allSettled([...runners.values()].map((r) => r.drain()));
      runners.clear();
      await placement.close?.();
      await worker?.drain();
      publisher.close();
      void watching;
      if (own) await nc.drain().catch(() => undefined);
      resolveClosed();
    })();
    return closingPromise;
  };

  log.info({ node: name, shards, programs: [...loaded.programs.keys()], functions: [...loaded.functions.keys()] }, "node started");
  return {
    name,
    programs: [...loaded.programs.keys()],
    functions: [...loaded.functions.keys()],
    activeActors: () => [...runners.values()].reduce((n, r) => n + r.activeActors, 0),
    ownedShards: () => [...runners.keys()].sort((a, b) => a - b),
    drain,
    close: drain,
    closed,
    [Symbol.asyncDispose]: drain,
  };
}
