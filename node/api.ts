// node/api.ts — the request/reply API on fm.api.<verb>, served by every node in one queue group.
import type { JetStreamClient, JetStreamManager, PubAck } from "@nats-io/jetstream";
import { headers as natsHeaders, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { decodePayload, encodePayload, type DecodeLimits } from "../protocol/codec.js";
import { isTransient } from "../protocol/connect.js";
import { ErrorCode, FlowmetalError, toWireError } from "../protocol/errors.js";
import { parseEvent } from "../protocol/events.js";
import type { ActorPage, ActorView, ApiReply, ProgramStats, HistoryPage, HistoryStep, SendResult, StateNotice, StepRecord, WireEvent } from "../protocol/records.js";
import { ApiVerb, ContentType, Header, formatAddress, parseActorAddress, parseProgramName, type ActorAddress, type Subjects } from "../protocol/subjects.js";
import { lazyIndexView, type IndexViewSource } from "./index-projector/view.js";
import { findRecord, findStepByInboxSeq, readLast, readRecords } from "./journal.js";
import { toHistoryStep, toNotice, toView } from "./views.js";
import type { Logger } from "./logger.js";
import type { ProgramDefinition } from "./program.js";

export interface ApiDeps {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  subjects: Subjects;
  programs: ReadonlyMap<string, ProgramDefinition>;
  functions: readonly string[];
  limits: DecodeLimits;
  log: Logger;
  /** The actor index for `list` and `stats`. @default opened by the service on the first such request */
  index?: IndexViewSource;
}

export interface ApiService {
  drain(): Promise<void>;
}

/** What `ask` returns: the outcome of the step that processed the event. */
export interface AskResult extends StateNotice {
  duplicate: boolean;
}

type Body = Record<string, unknown>;

function field<T>(body: Body, name: string, type: "string" | "number" | "object", required: boolean): T | undefined {
  const v = body[name];
  if (v === undefined || v === null) {
    if (required) throw new FlowmetalError(ErrorCode.BadRequest, `missing field '${name}'`);
    return undefined;
  }
  if (typeof v !== type) throw new FlowmetalError(ErrorCode.BadRequest, `field '${name}' must be a ${type}, got ${typeof v}`);
  return v as T;
}

/** Starts serving `fm.api.*`. */
export function createApiService(deps: ApiDeps): ApiService {
  const { nc, js, jsm, subjects, programs, limits, log } = deps;

  function actorOf(body: Body): ActorAddress {
    const a = parseActorAddress(field<string>(body, "actor", "string", true));
    if (!programs.has(a.program)) {
      throw new FlowmetalError(ErrorCode.UnknownProgram, `unknown program '${a.program}' (loaded: ${[...programs.keys()].join(", ") || "none"})`);
    }
    return a;
  }

  async function publish(a: ActorAddress, body: Body): Promise<{ ack: PubAck; event: WireEvent }> {
    const event = parseEvent(body.event);
    const bytes = encodePayload(event, "json");
    if (bytes.length > limits.maxBytes) {
      throw new FlowmetalError(ErrorCode.PayloadTooLarge, `event is ${bytes.length} bytes, over the ${limits.maxBytes}-byte limit`);
    }
    const msgId = field<string>(body, "msgId", "string", false);
    const h = natsHeaders();
    h.set(Header.ContentType, ContentType.Json);
    try {
      const ack = await js.publish(subjects.inbox(a), bytes, { headers: h, ...(msgId ? { msgID: msgId } : {}) });
      return { ack, event };
    } catch (err) {
      throw new FlowmetalError(ErrorCode.Unavailable, `event for ${formatAddress(a)} was not persisted: ${(err as Error).message}; retry with the same msgId`, { cause: err });
    }
  }

  async function send(body: Body): Promise<SendResult> {
    const a = actorOf(body);
    const { ack } = await publish(a, body);
    return { actor: formatAddress(a), seq: ack.seq, duplicate: ack.duplicate };
  }

  async function ask(body: Body): Promise<AskResult> {
    const a = actorOf(body);
    const timeoutMs = field<number>(body, "timeoutMs", "number", false) ?? 10_000;
    parseEvent(body.event);
    // Subscribe before publishing so the step's notice cannot slip past.
    const sub = nc.subscribe(subjects.state(a));
    const timer = setTimeout(() => sub.unsubscribe(), timeoutMs);
    try {
      const { ack } = await publish(a, body);
      if (ack.duplicate) {
        // A retry: the step that took the event may be long done; answer with that step, not a later one.
        const rec = await findStepByInboxSeq(jsm, subjects, a, ack.seq);
        if (rec) return outcome({ ...toNotice(rec), duplicate: true });
      }
      for await (const m of sub) {
        const notice = decodePayload(m.data, "json") as StateNotice;
        if (notice.seq === ack.seq) return outcome({ ...notice, duplicate: ack.duplicate });
      }
      throw new FlowmetalError(ErrorCode.Timeout, `no step for ${formatAddress(a)} within ${timeoutMs} ms; the event is accepted (inbox seq ${ack.seq}) and will be processed`, { details: { seq: ack.seq } });
    } finally {
      clearTimeout(timer);
      sub.unsubscribe();
    }
  }

  function outcome(r: AskResult): AskResult {
    if (r.outcome === "ok" || !r.error) return r;
    throw new FlowmetalError(r.error.code, r.error.message, { retryable: false, details: { ...r.error.details, step: r.step, value: r.value } });
  }

  async function get(body: Body): Promise<ActorView> {
    const a = parseActorAddress(field<string>(body, "actor", "string", true));
    const last = await readLast(jsm, subjects, a);
    if (!last) throw new FlowmetalError(ErrorCode.UnknownActor, `actor ${formatAddress(a)} has taken no step yet`);
    return toView(last.record);
  }

  async function history(body: Body): Promise<HistoryPage> {
    const a = parseActorAddress(field<string>(body, "actor", "string", true));
    const limit = field<number>(body, "limit", "number", false) ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new FlowmetalError(ErrorCode.BadRequest, `limit must be an integer from 1 to 1000, got ${limit}`);
    const at = field<number>(body, "at", "number", false);
    if (at !== undefined) {
      const rec = await findRecord(jsm, subjects, a, "step", at);
      if (rec) return { actor: formatAddress(a), steps: [toHistoryStep(rec)] };
      throw new FlowmetalError(ErrorCode.BadRequest, `actor ${formatAddress(a)} has no step ${at}`);
    }
    const after = field<number>(body, "after", "number", false) ?? 0;
    const page = await readRecords(jsm, subjects, a, after, limit);
    const res: HistoryPage = { actor: formatAddress(a), steps: page.map((r) => toHistoryStep(r.record)) };
    // Only point at a next page that has something on it.
    if (page.length === limit && (await readRecords(jsm, subjects, a, page[page.length - 1]!.seq, 1)).length > 0) res.next = page[page.length - 1]!.seq;
    return res;
  }

  const ownIndex = deps.index ? undefined : lazyIndexView({ nc, prefix: subjects.prefix, log });
  const index = deps.index ?? ownIndex!;

  async function list(body: Body): Promise<ActorPage> {
    const program = parseProgramName(field<string>(body, "program", "string", true));
    const limit = field<number>(body, "limit", "number", false) ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new FlowmetalError(ErrorCode.BadRequest, `limit must be an integer from 1 to 1000, got ${limit}`);
    const view = await index.get();
    return view.list({ program, limit, state: field<string>(body, "state", "string", false), status: field<string>(body, "status", "string", false), after: field<string>(body, "after", "string", false) });
  }

  async function stats(body: Body): Promise<ProgramStats> {
    const program = parseProgramName(field<string>(body, "program", "string", true));
    const view = await index.get();
    return { ...view.stats(program), lag: await view.lag() };
  }

  const handlers: Record<string, (body: Body) => Promise<unknown>> = {
    [ApiVerb.Send]: send,
    [ApiVerb.Ask]: ask,
    [ApiVerb.Get]: get,
    [ApiVerb.History]: history,
    [ApiVerb.List]: list,
    [ApiVerb.Stats]: stats,
    [ApiVerb.Programs]: async () => ({
      programs: [...programs.values()].map((p) => ({ name: p.name, version: p.version, description: p.description ?? null })),
      functions: deps.functions,
    }),
  };

  async function serve(verb: string, handler: (body: Body) => Promise<unknown>, m: Msg): Promise<void> {
    let reply: ApiReply<unknown>;
    try {
      const body = m.data.length === 0 ? {} : decodePayload(m.data, "json", limits);
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw new FlowmetalError(ErrorCode.BadRequest, "request body must be a JSON object");
      reply = { ok: true, result: await handler(body as Body) };
    } catch (err) {
      if (!FlowmetalError.is(err) && isTransient(err)) {
        // JetStream not ready (a restart, a leader election): say so, and that trying again is right.
        log.warn({ verb, err: String((err as Error)?.message ?? err) }, "api request failed: JetStream unavailable");
        reply = { ok: false, error: new FlowmetalError(ErrorCode.Unavailable, `${verb} failed, JetStream is unavailable: ${String((err as Error)?.message ?? err)}`).toWire() };
      } else {
        if (!FlowmetalError.is(err)) log.error({ verb, err: String((err as Error)?.stack ?? err) }, "api request failed");
        reply = { ok: false, error: toWireError(err) };
      }
    }
    m.respond(encodePayload(reply, "json"));
  }

  const subs: Subscription[] = Object.entries(handlers).map(([verb, handler]) =>
    nc.subscribe(subjects.api(verb), { queue: `${subjects.prefix}-api`, callback: (err, m) => { if (!err) void serve(verb, handler, m); } }),
  );

  return {
    async drain() {
      await Promise.allSettled(subs.map((s) => s.drain()));
      await ownIndex?.close();
    },
  };
}
