// node/admin/routes.ts — the admin API's routes: programs, statecharts, fleet queries, actors, history, time travel, send, cluster, live.
import type { JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import type { FastifyInstance } from "fastify";
import { decodePayload, encodePayload } from "../../protocol/codec.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import type { ApiReply, SendResult } from "../../protocol/records.js";
import { ApiVerb, parseActorAddress, parseActorKey, parseProgramName, type ActorAddress, type Subjects } from "../../protocol/subjects.js";
import type { IndexViewSource } from "../index-projector/view.js";
import { readLast, readRecords } from "../journal.js";
import type { FlowmetalNode } from "../node.js";
import type { ProgramDefinition } from "../program.js";
import { readShardCount } from "../streams.js";
import { toView } from "../views.js";
import { streamActor, streamIndex, type LiveStream } from "./live.js";
import { schemas } from "./schemas.js";
import { statechartOf, type Statechart } from "./statechart.js";
import { findStep, toStepView } from "./steps.js";

/** What the routes read from and answer with. */
export interface RouteDeps {
  nc: NatsConnection;
  jsm: JetStreamManager;
  subjects: Subjects;
  programs: ReadonlyMap<string, ProgramDefinition>;
  index: IndexViewSource;
  node: FlowmetalNode | undefined;
  /** Open live streams, closed when the server closes. */
  streams: Set<LiveStream>;
}

interface ClusterReply {
  shards: number;
  replicas: number;
  nodes: { name: string; owns: number[] }[];
  owners: { shard: number; node: string | null; epoch: number; since: number; reason: string; from: string | null; pinned: string | null }[];
}

function actorOf(params: unknown): ActorAddress {
  const p = params as { program: string; key: string };
  return { program: parseProgramName(p.program), key: parseActorKey(p.key) };
}

/** A request to `fm.api.<verb>`, answered by any node. */
async function apiRequest<T>(nc: NatsConnection, subjects: Subjects, verb: string, body: unknown, timeoutMs = 10_000): Promise<T> {
  let m;
  try {
    m = await nc.request(subjects.api(verb), encodePayload(body, "json"), { timeout: timeoutMs });
  } catch (err) {
    const msg = String((err as Error)?.message ?? err);
    if (/no responders/i.test(msg)) throw new FlowmetalError(ErrorCode.Unavailable, `no node serves ${subjects.api(verb)}`, { cause: err });
    if (/timeout/i.test(msg)) throw new FlowmetalError(ErrorCode.Timeout, `${verb} got no reply within ${timeoutMs} ms`, { cause: err });
    throw new FlowmetalError(ErrorCode.Unavailable, `${verb} failed: ${msg}`, { cause: err });
  }
  const reply = decodePayload(m.data, "json") as ApiReply<T>;
  if (reply.ok) return reply.result;
  throw FlowmetalError.fromWire(reply.error);
}

/** Registers every `/api` route on `app`. Each route's `config.scope` says which token scope it needs. */
export function registerRoutes(app: FastifyInstance, deps: RouteDeps): void {
  const { nc, jsm, subjects, programs, index, node } = deps;
  const charts = new Map<string, Statechart>();
  const read = { scope: "read" } as const;

  app.get("/api/programs", { schema: schemas.programs, config: read }, async () => {
    const view = await index.get();
    const indexed = new Map(view.programs().map((p) => [p.program, p]));
    const names = [...new Set([...programs.keys(), ...indexed.keys()])].sort();
    return {
      programs: names.map((name) => {
        const p = programs.get(name);
        const i = indexed.get(name);
        return { name, version: p?.version ?? null, description: p?.description ?? null, loaded: p !== undefined, actors: i?.total ?? 0, statuses: i?.statuses ?? {} };
      }),
    };
  });

  app.get("/api/programs/:program", { schema: schemas.program, config: read }, async (req) => {
    const name = parseProgramName((req.params as { program: string }).program);
    const p = programs.get(name);
    if (!p) throw new FlowmetalError(ErrorCode.UnknownProgram, `unknown program '${name}' (loaded here: ${[...programs.keys()].join(", ") || "none"})`);
    let chart = charts.get(name);
    if (!chart) charts.set(name, (chart = statechartOf(p)));
    return chart;
  });

  app.get("/api/programs/:program/stats", { schema: schemas.stats, config: read }, async (req) => {
    const name = parseProgramName((req.params as { program: string }).program);
    const view = await index.get();
    return { ...view.stats(name), lag: await view.lag() };
  });

  app.get("/api/programs/:program/actors", { schema: schemas.actors, config: read }, async (req) => {
    const name = parseProgramName((req.params as { program: string }).program);
    const q = req.query as { state?: string; status?: string; after?: string; limit?: number };
    const view = await index.get();
    return view.list({ program: name, state: q.state || undefined, status: q.status || undefined, after: q.after || undefined, limit: q.limit ?? 50 });
  });

  app.get("/api/actors/:program/:key", { schema: schemas.actor, config: read }, async (req) => {
    const a = actorOf(req.params);
    const last = await readLast(jsm, subjects, a);
    if (!last) throw new FlowmetalError(ErrorCode.UnknownActor, `actor ${a.program}/${a.key} has taken no step yet`);
    return toView(last.record);
  });

  app.get("/api/actors/:program/:key/history", { schema: schemas.history, config: read }, async (req) => {
    const a = actorOf(req.params);
    const q = req.query as { after?: number; limit?: number };
    const limit = q.limit ?? 100;
    const page = await readRecords(jsm, subjects, a, q.after ?? 0, limit);
    const res: { actor: string; steps: ReturnType<typeof toStepView>[]; next?: number } = { actor: `${a.program}/${a.key}`, steps: page.map((r) => toStepView(r.record)) };
    const lastSeq = page[page.length - 1]?.seq;
    if (page.length === limit && lastSeq !== undefined && (await readRecords(jsm, subjects, a, lastSeq, 1)).length > 0) res.next = lastSeq;
    if (page.length === 0 && (q.after ?? 0) === 0 && !(await readLast(jsm, subjects, a))) {
      throw new FlowmetalError(ErrorCode.UnknownActor, `actor ${a.program}/${a.key} has taken no step yet`);
    }
    return res;
  });

  app.get("/api/actors/:program/:key/steps/:step", { schema: schemas.step, config: read }, async (req) => {
    const a = actorOf(req.params);
    const step = (req.params as { step: number }).step;
    const rec = await findStep(jsm, subjects, a, step);
    if (!rec) throw new FlowmetalError(ErrorCode.UnknownActor, `actor ${a.program}/${a.key} has no step ${step}`, { details: { step } });
    return toStepView(rec);
  });

  app.post("/api/actors/:program/:key/events", { schema: schemas.send, config: { scope: "admin" } }, async (req, reply) => {
    const a = actorOf(req.params);
    const body = req.body as { event: { type: string }; msgId?: string };
    const r = await apiRequest<SendResult>(nc, subjects, ApiVerb.Send, { actor: `${a.program}/${a.key}`, event: body.event, ...(body.msgId ? { msgId: body.msgId } : {}) });
    return reply.code(202).send(r);
  });

  app.get("/api/cluster", { schema: schemas.cluster, config: read }, async () => {
    let view: ClusterReply;
    let clustered = true;
    try {
      view = await apiRequest<ClusterReply>(nc, subjects, ApiVerb.Cluster, {}, 5_000);
    } catch (err) {
      if (!FlowmetalError.is(err, ErrorCode.Unavailable) && !FlowmetalError.is(err, ErrorCode.UnknownVerb)) throw err;
      // Not a cluster (createNode with its single-node placement): this node owns every shard.
      clustered = false;
      const shards = (await readShardCount(jsm, subjects)) ?? 0;
      const owns = node?.ownedShards() ?? [];
      view = {
        shards,
        replicas: 1,
        nodes: node ? [{ name: node.name, owns }] : [],
        owners: owns.map((shard) => ({ shard, node: node?.name ?? null, epoch: 1, since: 0, reason: "single node", from: null, pinned: null })),
      };
    }
    const handoffs = view.owners
      .filter((o) => o.from !== null)
      .sort((x, y) => y.since - x.since)
      .slice(0, 20)
      .map((o) => ({ shard: o.shard, from: o.from, to: o.node, epoch: o.epoch, at: o.since, reason: o.reason }));
    return { clustered, self: node?.name ?? null, ...view, handoffs };
  });

  app.get("/api/index", { schema: schemas.index, config: read }, async () => {
    const view = await index.get();
    return { actors: view.size, lag: await view.lag() };
  });

  app.get("/api/live", { schema: schemas.live, config: read }, async (req, reply) => {
    const q = req.query as { actor?: string; program?: string };
    const a = q.actor ? parseActorAddress(q.actor) : undefined;
    const view = a ? undefined : await index.get();
    reply.hijack();
    const s = a ? streamActor(reply.raw, nc, subjects, a) : streamIndex(reply.raw, view!, q.program);
    deps.streams.add(s);
    req.raw.once("close", () => {
      deps.streams.delete(s);
      s.close();
    });
  });
}
