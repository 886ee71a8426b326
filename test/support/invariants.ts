// test/support/invariants.ts — reads journals, emitted events and the external sink, and checks DESIGN.md §2's invariants I1–I7.
import { readFile } from "node:fs/promises";
import type { JetStreamManager } from "@nats-io/jetstream";
import { readAll, readLast } from "../../node/journal.js";
import type { Effect, StepRecord, WireEvent } from "../../protocol/records.js";
import { createSubjects, parseActorAddress, type Subjects } from "../../protocol/subjects.js";

/** One line of an external sink: one execution of a function with side effects. */
export interface SinkEntry {
  callId: string;
  actor: string;
}

export type Invariant = "I1" | "I2" | "I3" | "I4" | "I5" | "I6" | "I7";

export interface InvariantReport {
  actors: number;
  steps: number;
  stepsByKind: Record<string, number>;
  /** Messages on the out stream for the actors checked (after JetStream's dedupe). */
  emitted: number;
  /** Function calls made (call effects persisted) and results applied (result steps). */
  calls: number;
  results: number;
  /** Executions recorded in the sink; a call may execute more than once (at-least-once), its result applies once. */
  executions: number;
  /** Executions of a call beyond its first (a worker died between running it and reporting). */
  repeatedExecutions: number;
  /** What broke, per invariant; every list is empty when all hold. I7 here lists effects of persisted steps that never happened. */
  violations: Record<Invariant, string[]>;
}

export interface CheckOptions {
  /** Subject prefix. @default "fm" */
  prefix?: string;
  /** Lines of the external sink, one per function execution. */
  sink?: readonly SinkEntry[];
  /**
   * Also check that every effect of every persisted step happened (emits on the out stream, sends in the
   * target's journal, calls answered): only true once the system is quiescent after faults stop.
   */
  quiescent?: boolean;
}

/** Reads a JSON-lines sink file; a missing file is an empty sink. A torn last line (SIGKILL mid-write) is skipped. */
export async function readSink<T extends SinkEntry>(path: string): Promise<T[]> {
  const text = await readFile(path, "utf8").catch(() => "");
  const out: T[] = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      // appendFileSync of one short line is atomic in practice; keep going if it was not
    }
  }
  return out;
}

/** Every record of each actor, in journal order. */
export async function readJournals(jsm: JetStreamManager, actors: readonly string[], subjects: Subjects = createSubjects()): Promise<Map<string, StepRecord[]>> {
  const out = new Map<string, StepRecord[]>();
  const queue = [...actors];
  const worker = async () => {
    for (let a = queue.shift(); a !== undefined; a = queue.shift()) {
      const recs: StepRecord[] = [];
      for await (const r of readAll(jsm, subjects, parseActorAddress(a))) recs.push(r.record);
      out.set(a, recs);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return out;
}

interface OutMessage {
  subject: string;
  msgId: string | undefined;
  event: WireEvent;
}

/** Every message on the out stream whose subject matches `filter`, in stream order. */
async function readOut(jsm: JetStreamManager, subjects: Subjects, filter: string): Promise<OutMessage[]> {
  const info = await jsm.streams.info(subjects.streams.out, { subjects_filter: filter });
  const total = Object.values(info.state.subjects ?? {}).reduce((n, c) => n + c, 0);
  if (total === 0) return [];
  const consumer = await jsm.jetstream().consumers.get(subjects.streams.out, { filter_subjects: [filter] });
  const msgs = await consumer.consume();
  const out: OutMessage[] = [];
  for await (const m of msgs) {
    out.push({ subject: m.subject, msgId: m.headers?.get("Nats-Msg-Id") || undefined, event: m.json<WireEvent>() });
    if (m.info.pending === 0) break;
  }
  await msgs.close();
  return out;
}

function withoutMeta(e: WireEvent): WireEvent {
  const { $fm: _meta, ...rest } = e;
  return rest as WireEvent;
}

/** JSON with sorted keys: the same text for equal events whatever their key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    x && typeof x === "object" && !Array.isArray(x) ? Object.fromEntries(Object.entries(x as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))) : x,
  );
}

const cap = (list: string[], max = 20) => (list.length > max ? [...list.slice(0, max), `… and ${list.length - max} more`] : list);

/**
 * Checks I1–I6 (and, when `quiescent`, that every effect of a persisted step happened) for `actors`
 * (`<program>/<key>` addresses; pass every actor that sends or receives). `acked` maps an actor to the ids
 * (`event.id`) of the external events acknowledged to its senders. Returns a report; it asserts nothing.
 */
export async function checkInvariants(
  jsm: JetStreamManager,
  actors: readonly string[],
  acked: ReadonlyMap<string, readonly string[]>,
  options: CheckOptions = {},
): Promise<InvariantReport> {
  const subjects = createSubjects(options.prefix);
  const journals = await readJournals(jsm, actors, subjects);
  const v: Record<Invariant, string[]> = { I1: [], I2: [], I3: [], I4: [], I5: [], I6: [], I7: [] };
  const stepsByKind: Record<string, number> = {};
  let steps = 0;

  // Effects of persisted steps, by id, and sends by (target, event) to match the target's send steps.
  const effects = new Map<string, { actor: string; step: number; effect: Effect }>();
  const sends = new Map<string, string[]>();
  for (const [actor, recs] of journals) {
    for (const r of recs) {
      for (const e of r.effects) {
        effects.set(e.id, { actor, step: r.step, effect: e });
        if (e.kind === "send") {
          const k = `${e.to}|${canonical(e.event)}`;
          sends.set(k, [...(sends.get(k) ?? []), e.id]);
        }
      }
    }
  }

  const delivered = new Set<string>();
  const results = new Map<string, number>();
  let calls = 0;
  for (const [actor, recs] of journals) {
    // I3: steps 1..n in journal order, no gaps or forks; inputs consumed in inbox order; epochs never decrease.
    const seen = new Map<number, number>();
    recs.forEach((r, i) => {
      steps++;
      stepsByKind[r.kind] = (stepsByKind[r.kind] ?? 0) + 1;
      seen.set(r.step, (seen.get(r.step) ?? 0) + 1);
      if (r.actor !== actor) v.I3.push(`${actor}: record ${i + 1} belongs to ${r.actor}`);
      if (r.step !== i + 1) v.I3.push(`${actor}: record ${i + 1} in the journal is step ${r.step} (expected ${i + 1})`);
      const prev = recs[i - 1];
      if (prev && r.epoch < prev.epoch) v.I3.push(`${actor}: epoch went down from ${prev.epoch} to ${r.epoch} at step ${r.step}`);
      if (prev && r.seq <= prev.seq) v.I3.push(`${actor}: step ${r.step} consumed inbox seq ${r.seq}, not after step ${prev.step}'s seq ${prev.seq}`);
    });
    // I4: one writer, one record per step.
    for (const [step, n] of seen) if (n > 1) v.I4.push(`${actor}: ${n} records for step ${step}`);

    // I1/I2: every acknowledged event is in the history exactly once; no event is there twice.
    const byId = new Map<string, number[]>();
    for (const r of recs) {
      if (r.kind !== "event") continue;
      const id = (r.event as { id?: unknown }).id;
      if (typeof id === "string") byId.set(id, [...(byId.get(id) ?? []), r.step]);
    }
    for (const id of acked.get(actor) ?? []) {
      const at = byId.get(id) ?? [];
      if (at.length === 0) v.I1.push(`${actor}: acknowledged event '${id}' is in no step`);
      else if (at.length > 1) v.I2.push(`${actor}: acknowledged event '${id}' is in steps ${at.join(", ")}`);
    }
    for (const [id, at] of byId) {
      if (at.length > 1 && !(acked.get(actor) ?? []).includes(id)) v.I2.push(`${actor}: event '${id}' is in steps ${at.join(", ")}`);
    }

    const fired = new Set<string>();
    recs.forEach((r, i) => {
      calls += r.effects.filter((e) => e.kind === "call").length;
      // I5/I6 for actor-to-actor messages: each received send matches one persisted send effect, once.
      if (r.kind === "send") {
        const k = `${actor}|${canonical(withoutMeta(r.event))}`;
        const ids = sends.get(k) ?? [];
        const free = ids.find((id) => !delivered.has(id));
        if (ids.length === 0) v.I5.push(`${actor}: step ${r.step} received ${canonical(withoutMeta(r.event))}, which no persisted step sent`);
        else if (!free) v.I6.push(`${actor}: step ${r.step} received send ${ids.join("/")} again`);
        else delivered.add(free);
      }
      // I5/I6 for function results: a result belongs to a call a persisted step made, and applies once.
      if (r.kind === "result") {
        const callId = r.callId ?? "";
        const call = effects.get(callId);
        if (!call || call.effect.kind !== "call" || call.actor !== actor || call.step >= r.step) v.I5.push(`${actor}: step ${r.step} applied a result for '${callId}', which no earlier step of this actor called`);
        results.set(callId, (results.get(callId) ?? 0) + 1);
        if (results.get(callId) === 2) v.I6.push(`${actor}: the result of call '${callId}' was applied more than once`);
      }
      // I5/I6 for timers: a fire belongs to a timer pending after the previous step, and each schedule fires once.
      if (r.kind === "timer") {
        const prev = recs[i - 1];
        const t = r.timer !== undefined ? prev?.timers[r.timer] : undefined;
        const k = `${r.timer}@${t?.gen}`;
        if (!t) v.I5.push(`${actor}: step ${r.step} is a fire of timer '${r.timer}', which was not pending`);
        else if (fired.has(k)) v.I6.push(`${actor}: timer '${r.timer}' scheduled at step ${t.gen} fired again at step ${r.step}`);
        fired.add(k);
      }
    });
  }

  // I5/I6 for emitted events: each message on the out stream is an emit effect of a persisted step, stored once.
  const out: OutMessage[] = [];
  const programs = [...new Set(actors.map((a) => parseActorAddress(a).program))];
  const outSubjects = new Set(actors.map((a) => subjects.out(parseActorAddress(a))));
  for (const p of programs) out.push(...(await readOut(jsm, subjects, `${subjects.prefix}.out.${p}.>`)).filter((m) => outSubjects.has(m.subject)));
  const outIds = new Map<string, number>();
  for (const m of out) {
    const id = m.msgId ?? "(no Nats-Msg-Id)";
    outIds.set(id, (outIds.get(id) ?? 0) + 1);
    if (outIds.get(id) === 2) v.I6.push(`emitted effect '${id}' is stored more than once on ${m.subject}`);
    const e = effects.get(id);
    if (!e || e.effect.kind !== "emit") v.I5.push(`${m.subject}: emitted '${id}' belongs to no persisted step`);
    else if (subjects.out(parseActorAddress(e.actor)) !== m.subject || canonical(e.effect.event) !== canonical(m.event)) {
      v.I5.push(`${m.subject}: emitted '${id}' differs from its persisted effect`);
    }
  }

  // I5 for the external world: every execution of a function is a call of a persisted step.
  const executed = new Map<string, number>();
  let repeated = 0;
  for (const line of options.sink ?? []) {
    const e = effects.get(line.callId);
    if (!e || e.effect.kind !== "call" || e.actor !== line.actor) v.I5.push(`sink: ${line.actor} executed call '${line.callId}', which no persisted step made`);
    const n = (executed.get(line.callId) ?? 0) + 1;
    executed.set(line.callId, n);
    if (n > 1) repeated++;
  }

  if (options.quiescent) {
    // Effects are at-least-once at the wire: once faults stop, every effect of a persisted step has happened.
    const missing: string[] = [];
    for (const [id, { actor, effect }] of effects) {
      if (!journals.has(actor)) continue;
      if (effect.kind === "emit" && !outIds.has(id)) missing.push(`${actor}: emit ${id} never reached the out stream`);
      if (effect.kind === "send" && journals.has(effect.to) && !delivered.has(id)) missing.push(`${actor}: send ${id} never reached ${effect.to}`);
      if (effect.kind === "call" && !results.has(id)) {
        const cancelled = [...effects.values()].some((x) => x.effect.kind === "cancel" && x.effect.callId === id);
        if (!cancelled) missing.push(`${actor}: call ${id} never got a result`);
      }
    }
    v.I7.push(...missing);
  }

  for (const k of Object.keys(v) as Invariant[]) v[k] = cap(v[k]);
  return {
    actors: journals.size,
    steps,
    stepsByKind,
    emitted: out.length,
    calls,
    results: [...results.values()].reduce((a, b) => a + b, 0),
    executions: options.sink?.length ?? 0,
    repeatedExecutions: repeated,
    violations: v,
  };
}

/** The last record of each actor whose state does not yet satisfy `expected` (which returns why not, or undefined). */
async function unmet(jsm: JetStreamManager, actors: readonly string[], expected: (actor: string, last: StepRecord | undefined) => string | undefined, subjects: Subjects): Promise<string[]> {
  const out: string[] = [];
  const queue = [...actors];
  const worker = async () => {
    for (let a = queue.shift(); a !== undefined; a = queue.shift()) {
      const last = await readLast(jsm, subjects, parseActorAddress(a));
      const why = expected(a, last?.record);
      if (why !== undefined) out.push(`${a}: ${why}`);
    }
  };
  await Promise.all(Array.from({ length: 8 }, worker));
  return out.sort();
}

/**
 * I7: waits until every actor's last record satisfies `expected`, up to `boundMs`. Returns how long it
 * took and, if the bound passed, which actors were stuck and why.
 */
export async function awaitLiveness(
  jsm: JetStreamManager,
  actors: readonly string[],
  expected: (actor: string, last: StepRecord | undefined) => string | undefined,
  boundMs: number,
  options: { prefix?: string } = {},
): Promise<{ ms: number; stuck: string[] }> {
  const subjects = createSubjects(options.prefix);
  const start = Date.now();
  for (;;) {
    const stuck = await unmet(jsm, actors, expected, subjects);
    if (stuck.length === 0) return { ms: Date.now() - start, stuck };
    if (Date.now() - start > boundMs) return { ms: Date.now() - start, stuck: cap(stuck) };
    await new Promise((r) => setTimeout(r, 200));
  }
}
