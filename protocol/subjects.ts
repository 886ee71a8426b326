// protocol/subjects.ts — every subject, stream and header name Flowmetal uses, spelled in exactly one place.
import { ErrorCode, FlowmetalError } from "./errors.js";

declare const programBrand: unique symbol;
declare const keyBrand: unique symbol;
/** A validated program name token. */
export type ProgramName = string & { readonly [programBrand]: true };
/** A validated actor key token. */
export type ActorKey = string & { readonly [keyBrand]: true };

/** An actor's address: `<program>/<key>`. */
export interface ActorAddress {
  readonly program: ProgramName;
  readonly key: ActorKey;
}

const tokenPattern = /^[A-Za-z0-9_-]{1,128}$/;

function describe(value: unknown): string {
  if (typeof value !== "string") return `a ${value === null ? "null" : typeof value}`;
  if (value.length > 40) return `'${value.slice(0, 40)}…' (${value.length} characters)`;
  return `'${value}'`;
}

/** Checks a program name token; throws `FM_ERR_INVALID_TOKEN` naming the bad value. */
export function parseProgramName(value: unknown): ProgramName {
  if (typeof value === "string" && tokenPattern.test(value)) return value as ProgramName;
  throw new FlowmetalError(
    ErrorCode.InvalidToken,
    `invalid program name ${describe(value)}: use 1-128 characters of A-Z a-z 0-9 _ -`,
  );
}

/** Checks an actor key token; throws `FM_ERR_INVALID_TOKEN` naming the bad value. */
export function parseActorKey(value: unknown): ActorKey {
  if (typeof value === "string" && tokenPattern.test(value)) return value as ActorKey;
  throw new FlowmetalError(
    ErrorCode.InvalidToken,
    `invalid actor key ${describe(value)}: use 1-128 characters of A-Z a-z 0-9 _ - (base64url-encode other keys)`,
  );
}

/** Parses `<program>/<key>`. */
export function parseActorAddress(value: unknown): ActorAddress {
  if (typeof value !== "string") {
    throw new FlowmetalError(ErrorCode.InvalidAddress, `invalid actor address ${describe(value)}: expected '<program>/<key>'`);
  }
  const slash = value.indexOf("/");
  if (slash < 0 || slash !== value.lastIndexOf("/")) {
    throw new FlowmetalError(ErrorCode.InvalidAddress, `invalid actor address ${describe(value)}: expected '<program>/<key>'`);
  }
  return { program: parseProgramName(value.slice(0, slash)), key: parseActorKey(value.slice(slash + 1)) };
}

/** `order/o-17` */
export function formatAddress(a: ActorAddress): string {
  return `${a.program}/${a.key}`;
}

/** Header names on Flowmetal messages. `Nats-*` ones are JetStream's own. */
export const Header = {
  MsgId: "Nats-Msg-Id",
  ContentType: "Content-Type",
  /** What produced an inbox message: absent for external events; `timer`, `result`, `send`. */
  Kind: "Fm-Kind",
  /** Timer id (as the program named it) on a fired timer. */
  Timer: "Fm-Timer",
  /** Step that scheduled a timer; a fire whose generation is no longer pending is dropped. */
  TimerGen: "Fm-Timer-Gen",
  /** Call id on a function call and on its result. */
  Call: "Fm-Call",
  /** Sender actor address on actor-to-actor messages. */
  From: "Fm-From",
  /** Effect id on effects the node publishes. */
  Effect: "Fm-Effect",
  /** Set by the scheduler on fired timers. */
  Scheduler: "Nats-Scheduler",
} as const;

export const ContentType = {
  Json: "application/json",
  Cbor: "application/cbor",
} as const;

export const InboxKind = {
  Timer: "timer",
  Result: "result",
  Send: "send",
} as const;

/** API verbs served on `<prefix>.api.<verb>`. */
export const ApiVerb = {
  Send: "send",
  Ask: "ask",
  Get: "get",
  History: "history",
  Programs: "programs",
  List: "list",
  Stats: "stats",
  Cluster: "cluster",
  Move: "move",
  Unpin: "unpin",
  Drain: "drain",
} as const;
export type ApiVerb = (typeof ApiVerb)[keyof typeof ApiVerb];

/** Subjects and stream names for one subject prefix (default `fm`). */
export interface Subjects {
  readonly prefix: string;
  readonly streams: { readonly inbox: string; readonly journal: string; readonly calls: string; readonly out: string; readonly dead: string };
  /** Where senders publish events: `fm.in.<program>.<key>`. */
  inbox(a: ActorAddress): string;
  /** What the inbox stream stores after its partition transform: `fm.inbox.<shard>.<program>.<key>`. */
  inboxStored(shard: number, a: ActorAddress): string;
  /** Filter for one shard's consumer. */
  inboxShard(shard: number): string;
  /** The per-actor journal subject: `fm.log.<program>.<key>`. */
  journal(a: ActorAddress): string;
  /** Durable timer schedule subject: `fm.timer.<program>.<key>.<timerToken>`. */
  timer(a: ActorAddress, timerToken: string): string;
  /** Every timer schedule of one actor. */
  timersOf(a: ActorAddress): string;
  /** Emitted events: `fm.out.<program>.<key>`. */
  out(a: ActorAddress): string;
  /** State notices after each step: `fm.state.<program>.<key>`. */
  state(a: ActorAddress): string;
  /** Function calls: `fm.fx.call.<function>`. */
  call(fn: string): string;
  /** Cancel notices for running calls: `fm.fx.cancel.<function>`. */
  cancel(fn: string): string;
  /** Messages that could not become a step (unknown program, undecodable payload), with a reason. */
  dead(program: string, key: string): string;
  /** Request/reply API. */
  api(verb: string): string;
  /** Parses a stored inbox subject back into shard and address; null if it is not one. */
  parseInboxStored(subject: string): { shard: number; program: string; key: string } | null;
}

const prefixPattern = /^[A-Za-z0-9_-]{1,32}$/;

/** Builds the subject table for a prefix. Function names may contain dots (`http.request`). */
export function createSubjects(prefix = "fm"): Subjects {
  if (!prefixPattern.test(prefix)) {
    throw new FlowmetalError(ErrorCode.InvalidToken, `invalid subject prefix ${describe(prefix)}: use 1-32 characters of A-Z a-z 0-9 _ -`);
  }
  const up = prefix.toUpperCase().replace(/-/g, "_");
  const p = prefix;
  const inboxStoredPrefix = `${p}.inbox.`;
  return Object.freeze({
    prefix,
    streams: Object.freeze({ inbox: `${up}_IN`, journal: `${up}_LOG`, calls: `${up}_FX`, out: `${up}_OUT`, dead: `${up}_DEAD` }),
    inbox: (a: ActorAddress) => `${p}.in.${a.program}.${a.key}`,
    inboxStored: (shard: number, a: ActorAddress) => `${p}.inbox.${shard}.${a.program}.${a.key}`,
    inboxShard: (shard: number) => `${p}.inbox.${shard}.>`,
    journal: (a: ActorAddress) => `${p}.log.${a.program}.${a.key}`,
    timer: (a: ActorAddress, token: string) => `${p}.timer.${a.program}.${a.key}.${token}`,
    timersOf: (a: ActorAddress) => `${p}.timer.${a.program}.${a.key}.*`,
    out: (a: ActorAddress) => `${p}.out.${a.program}.${a.key}`,
    state: (a: ActorAddress) => `${p}.state.${a.program}.${a.key}`,
    call: (fn: string) => `${p}.fx.call.${fn}`,
    cancel: (fn: string) => `${p}.fx.cancel.${fn}`,
    dead: (program: string, key: string) => `${p}.dead.${program}.${key}`,
    api: (verb: string) => `${p}.api.${verb}`,
    parseInboxStored(subject: string) {
      if (!subject.startsWith(inboxStoredPrefix)) return null;
      const parts = subject.slice(inboxStoredPrefix.length).split(".");
      if (parts.length !== 3) return null;
      const [shard, program, key] = parts as [string, string, string];
      return { shard: Number(shard), program, key };
    },
  });
}

/**
 * The shard of an actor: FNV-1a (32-bit) of `program` followed by `key`, modulo the shard count. This is
 * exactly what the inbox stream's `{{partition(shards,1,2)}}` transform computes on the server.
 */
export function shardOf(a: ActorAddress, shards: number): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(a.program + a.key)) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h % shards;
}

/** Function names: dot-separated tokens, e.g. `payments.charge` or `http.request`. */
const functionPattern = /^[A-Za-z0-9_-]{1,64}(\.[A-Za-z0-9_-]{1,64}){0,7}$/;

/** Checks a function name; throws `FM_ERR_INVALID_TOKEN`. */
export function parseFunctionName(value: unknown): string {
  if (typeof value === "string" && functionPattern.test(value)) return value;
  throw new FlowmetalError(
    ErrorCode.InvalidToken,
    `invalid function name ${describe(value)}: use dot-separated tokens of A-Z a-z 0-9 _ -`,
  );
}
