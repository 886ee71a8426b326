// node/step.ts — the pure step: (snapshot, input) → next snapshot + effect records, with XState's traps handled.
import { createHash } from "node:crypto";
import { createActor, fromTransition, type AnyMachineSnapshot, type AnyStateMachine } from "xstate";
import { ErrorCode, FlowmetalError, toWireError, type WireError } from "../protocol/errors.js";
import type { CallRecord, CallResult, Effect, InputKind, StepOutcome, StepRecord, TimerRecord, WireEvent } from "../protocol/records.js";
import { formatAddress, parseActorAddress, type ActorAddress } from "../protocol/subjects.js";
import { effectPosition } from "./effects.js";
import { functionMetaOf, sendEventType, type ProgramDefinition } from "./program.js";

/** An actor as the node holds it between steps. */
export interface ActorState {
  readonly address: ActorAddress;
  /** Last step taken; 0 for an actor that does not exist yet. */
  step: number;
  /** Inbox sequence consumed by the last step. */
  seq: number;
  /** Journal stream sequence of the last record (the fence for the next append); 0 if none. */
  journalSeq: number;
  snapshot: AnyMachineSnapshot | undefined;
  timers: Record<string, TimerRecord>;
  calls: Record<string, CallRecord>;
  /** Per sending actor, the position `[step, index]` of the last send taken from it. */
  senders: Record<string, [number, number]>;
  /** The last record, kept so its effects can be published again after a crash. */
  last: StepRecord | undefined;
}

/** One input read from the inbox. */
export type StepInput =
  | { seq: number; kind: "event"; event: WireEvent }
  /** From another actor: `from` is its address, `effect` the id of the send effect (`<program>.<key>.<step>.<index>`). */
  | { seq: number; kind: "send"; event: WireEvent; from?: string; effect?: string }
  | { seq: number; kind: "timer"; timer: string; gen: number; event: WireEvent }
  | { seq: number; kind: "result"; result: CallResult };

export interface StepContext {
  time: number;
  epoch: number;
  node: string;
}

/** A custom (user-written) action to run best-effort after the step is persisted. */
export interface CustomAction {
  type: string;
  run: () => void;
}

export type StepPlan =
  | { kind: "drop"; reason: string }
  | { kind: "step"; record: StepRecord; snapshot: AnyMachineSnapshot | undefined; custom: CustomAction[] };

/** Restores a persisted snapshot with history values and children intact (not `resolveState`). */
export function restoreSnapshot(machine: AnyStateMachine, persisted: unknown): AnyMachineSnapshot {
  return createActor(machine, { snapshot: persisted as never }).getSnapshot() as AnyMachineSnapshot;
}

/** Logic with nothing in it, whose actors only serve to make a fresh actor system. */
const systemSeed = fromTransition((s: null) => s, null);
/** Per machine, the `self` its pure transitions run as, and the actor system they use (see inertScope). */
const inertSelves = new WeakMap<AnyStateMachine, { self: { system: unknown }; system: TrackedSystem }>();

/** An actor system that notes whether anything registered in it (a spawned or invoked child). */
interface TrackedSystem {
  system: unknown;
  used: boolean;
}

function trackedSystem(): TrackedSystem {
  const system = createActor(systemSeed).system as unknown as Record<"_register" | "_set", (...args: unknown[]) => unknown>;
  const tracked: TrackedSystem = { system, used: false };
  for (const method of ["_register", "_set"] as const) {
    const original = system[method]!.bind(system);
    system[method] = (...args: unknown[]) => {
      tracked.used = true;
      return original(...args);
    };
  }
  return tracked;
}

/**
 * What XState's pure `transition()` / `initialTransition()` do, minus the throwaway actor: each of their
 * calls creates an actor of the machine (computing its initial state) only to serve as `self`, about a tenth
 * of a node's CPU per step in profiles. Here that actor is made once per machine. Its actor system is kept
 * as long as nothing registers in it; after a call that spawned or invoked a child, the next call gets a
 * fresh one (as each of XState's calls does), so children with a `systemId` never meet an earlier call's
 * and nothing accumulates. Actions are collected, not executed.
 */
function inertScope(machine: AnyStateMachine, actions: unknown[]): never {
  let cached = inertSelves.get(machine);
  if (!cached) {
    cached = { self: createActor(machine) as unknown as { system: unknown }, system: trackedSystem() };
    inertSelves.set(machine, cached);
  }
  if (cached.system.used) cached.system = trackedSystem();
  const { self } = cached;
  const system = cached.system.system;
  self.system = system;
  return { self, defer: noop, id: "", logger: noop, sessionId: "", stopChild: noop, system, emit: noop, actionExecutor: (a: unknown) => void actions.push(a) } as never;
}
const noop = () => {};

function transition(machine: AnyStateMachine, snapshot: AnyMachineSnapshot, event: WireEvent): [AnyMachineSnapshot, unknown[]] {
  const actions: unknown[] = [];
  return [machine.transition(snapshot, event as never, inertScope(machine, actions)) as AnyMachineSnapshot, actions];
}

function initialTransition(machine: AnyStateMachine, input: WireEvent): [AnyMachineSnapshot, unknown[]] {
  const actions: unknown[] = [];
  return [machine.getInitialSnapshot(inertScope(machine, actions), input) as AnyMachineSnapshot, actions];
}

/** Subject token for a timer id: stable, short and subject-safe whatever the id contains. */
export function timerToken(timerId: string): string {
  return createHash("sha256").update(timerId).digest("base64url").slice(0, 22);
}

export function effectId(a: ActorAddress, step: number, index: number): string {
  return `${a.program}.${a.key}.${step}.${index}`;
}

type Draft = Effect extends infer E ? (E extends Effect ? Omit<E, "id"> : never) : never;

interface Working {
  /** Timers pending before this step (their schedules are on the server). */
  before: Readonly<Record<string, TimerRecord>>;
  timers: Record<string, TimerRecord>;
  calls: Record<string, CallRecord>;
  /** Effects in order; null marks one cancelled later in the same step. */
  effects: (Draft | null)[];
  timerEffect: Map<string, number>;
  callEffect: Map<string, number>;
  custom: CustomAction[];
}

interface ExecAction {
  type: string;
  params?: unknown;
  exec?: ((...args: unknown[]) => unknown) | undefined;
  info?: unknown;
}

function scheduleTimer(w: Working, id: string, delay: number, event: WireEvent, step: number, time: number): void {
  if (typeof delay !== "number" || !Number.isFinite(delay) || delay < 0) {
    throw new FlowmetalError(ErrorCode.Unsupported, `delay for '${id}' is not a non-negative number of ms`);
  }
  const token = timerToken(id);
  const dueMs = time + delay;
  const prev = w.timerEffect.get(id);
  if (prev !== undefined) w.effects[prev] = null; // replaced within the step: only the last one counts
  w.timers[id] = { gen: step, dueMs, token };
  w.timerEffect.set(id, w.effects.length);
  // Publishing on the same schedule subject replaces a pending timer with this id: no second timer.
  w.effects.push({ kind: "schedule", timer: id, token, gen: step, dueMs, event: plainEvent(event) });
}

function cancelTimer(w: Working, id: string): void {
  const t = w.timers[id];
  if (!t) return;
  delete w.timers[id];
  const made = w.timerEffect.get(id);
  if (made !== undefined) {
    // Scheduled in this very step: that schedule never left the node.
    w.effects[made] = null;
    w.timerEffect.delete(id);
  }
  // Only a schedule already on the server needs removing.
  if (w.before[id]) w.effects.push({ kind: "unschedule", timer: id, token: t.token });
}

function startCall(w: Working, a: ExecAction, step: number): void {
  const p = a.params as { id?: string; src?: unknown; input?: unknown; actorRef?: { logic?: unknown } };
  const invokeId = String(p.id);
  const meta = functionMetaOf(p.actorRef?.logic);
  if (!meta) {
    const src = typeof p.src === "string" ? p.src : "(inline logic)";
    throw new FlowmetalError(
      ErrorCode.Unsupported,
      `invoke '${invokeId}' (src ${src}) is not a Flowmetal function: declare it with defineFunction() or functionRef() and put it in setup({ actors })`,
    );
  }
  stopCall(w, invokeId); // re-entering a state reuses the invoke id: the old call is stopped
  w.callEffect.set(invokeId, w.effects.length);
  w.calls[invokeId] = { callId: "", fn: meta.name, step }; // call id filled in once effect ids are known
  w.effects.push({ kind: "call", fn: meta.name, invokeId, input: p.input ?? null, retry: { ...meta.retry }, timeoutMs: meta.timeoutMs });
}

function stopCall(w: Working, invokeId: string): void {
  const c = w.calls[invokeId];
  if (!c) return;
  delete w.calls[invokeId];
  const made = w.callEffect.get(invokeId);
  if (made !== undefined) {
    // Spawned and stopped within one step: XState never starts such a child, nor do we.
    w.effects[made] = null;
    w.callEffect.delete(invokeId);
    return;
  }
  w.effects.push({ kind: "cancel", fn: c.fn, callId: c.callId });
}

function plainEvent(e: unknown): WireEvent {
  return e as WireEvent;
}

function applyActions(w: Working, actions: readonly ExecAction[], step: number, time: number): void {
  actions.forEach((a, index) => {
    switch (a.type) {
      case "xstate.raise": {
        const p = a.params as { event: WireEvent; delay?: number; id?: string };
        // An immediate raise was already applied inside transition(); running it again would deliver it twice.
        if (p.delay === undefined) return;
        scheduleTimer(w, p.id ?? `$fm.raise.${step}.${index}`, p.delay, p.event, step, time);
        return;
      }
      case "xstate.cancel": {
        const p = a.params as { sendId: string };
        cancelTimer(w, p.sendId);
        return;
      }
      case "xstate.spawnChild":
        startCall(w, a, step);
        return;
      case "xstate.stopChild": {
        const p = a.params as { id?: string } | string | undefined;
        // Its params hold the child's ActorRef, not an id.
        const id = typeof p === "string" ? p : p?.id;
        if (id !== undefined) stopCall(w, id);
        return;
      }
      case "xstate.emit": {
        const p = a.params as { event: WireEvent };
        if (p.event.type === sendEventType) {
          const to = (p.event as { to?: unknown }).to;
          const addr = parseActorAddress(to);
          const event = (p.event as { event?: unknown }).event;
          if (typeof event !== "object" || event === null || typeof (event as WireEvent).type !== "string") {
            throw new FlowmetalError(ErrorCode.InvalidEvent, `sendToActor('${String(to)}') needs an event object with a string type`);
          }
          w.effects.push({ kind: "send", to: formatAddress(addr), event: event as WireEvent });
        } else {
          w.effects.push({ kind: "emit", event: p.event });
        }
        return;
      }
      case "xstate.sendTo":
        throw new FlowmetalError(
          ErrorCode.Unsupported,
          "sendTo is not durable in Flowmetal: use raise() (with a delay) for the actor itself and sendToActor() for other actors",
        );
      default:
        if (!a.type.startsWith("xstate.") && typeof a.exec === "function") {
          const exec = a.exec;
          w.custom.push({ type: a.type, run: () => void exec(a.info, a.params) });
        }
    }
  });
}

/** Turns a call result into the XState event for its invoke. */
function resultEvent(invokeId: string, result: CallResult): WireEvent {
  if ("error" in result) return { type: `xstate.error.actor.${invokeId}`, error: result.error, actorId: invokeId };
  return { type: `xstate.done.actor.${invokeId}`, output: result.output, actorId: invokeId };
}

function snapshotError(s: AnyMachineSnapshot): WireError | undefined {
  if (s.status !== "error") return undefined;
  const cause = (s as { error?: unknown }).error;
  const msg = cause instanceof Error ? cause.message : String(cause);
  return new FlowmetalError(ErrorCode.StepFailed, `a guard or action threw: ${msg}`).toWire();
}

/**
 * Computes one step without doing anything: the caller appends the record, and only then publishes its
 * effects. Returns `drop` for inputs that must not become steps (redelivered, stale timer, stale result).
 */
export function planStep(program: ProgramDefinition, state: ActorState, input: StepInput, ctx: StepContext): StepPlan {
  if (input.seq <= state.seq) return { kind: "drop", reason: "already consumed" };
  const step = state.step + 1;
  const machine = program.machine;
  const w: Working = { before: state.timers, timers: { ...state.timers }, calls: { ...state.calls }, effects: [], timerEffect: new Map(), callEffect: new Map(), custom: [] };

  let event: WireEvent;
  let kind: InputKind = input.kind;
  if (input.kind === "timer") {
    const t = state.timers[input.timer];
    if (!t || t.gen !== input.gen) return { kind: "drop", reason: `timer '${input.timer}' (generation ${input.gen}) is no longer pending` };
    delete w.timers[input.timer];
    event = input.event;
  } else if (input.kind === "result") {
    const entry = Object.entries(state.calls).find(([, c]) => c.callId === input.result.callId);
    if (!entry) return { kind: "drop", reason: `call '${input.result.callId}' is no longer pending` };
    const [invokeId] = entry;
    delete w.calls[invokeId]; // done: leaving the state now must not cancel it
    event = resultEvent(invokeId, input.result);
    kind = "result";
  } else {
    event = input.event;
  }
  // Sends from one actor arrive in the order of its steps; one at or before the last taken is a copy that
  // outlived JetStream's duplicate window (an effect published again after a long outage): drop it.
  let senders = state.senders;
  if (input.kind === "send" && input.from && input.effect) {
    const pos = effectPosition(input.effect);
    const seen = state.senders[input.from];
    if (pos && seen && (pos[0] < seen[0] || (pos[0] === seen[0] && pos[1] <= seen[1]))) {
      return { kind: "drop", reason: `send ${input.effect} from ${input.from} was already taken` };
    }
    if (pos) senders = { ...state.senders, [input.from]: pos };
  }
  const stamped: WireEvent = { ...event, $fm: { time: ctx.time, step, seq: input.seq } };

  let outcome: StepOutcome = "ok";
  let error: WireError | undefined;
  let next: AnyMachineSnapshot | undefined = state.snapshot;
  try {
    let current = state.snapshot;
    if (!current) {
      // The actor is created by its first event, which is also its input.
      const [init, initActions] = initialTransition(machine, stamped);
      const initError = snapshotError(init);
      if (initError) throw FlowmetalError.fromWire(initError);
      applyActions(w, initActions as ExecAction[], step, ctx.time);
      current = init;
      next = init;
    }
    if (current.status !== "active") {
      outcome = "ignored";
      error = new FlowmetalError(ErrorCode.ActorDone, `actor ${formatAddress(state.address)} is ${current.status}; it accepts no more events`).toWire();
    } else if (!current.can(stamped)) {
      outcome = "ignored";
      error = new FlowmetalError(
        ErrorCode.EventNotAccepted,
        `state ${JSON.stringify(current.value)} of ${formatAddress(state.address)} does not accept '${event.type}'`,
        { details: { step } },
      ).toWire();
    } else {
      const [after, actions] = transition(machine, current, stamped);
      const err = snapshotError(after);
      if (err) throw FlowmetalError.fromWire(err);
      applyActions(w, actions as ExecAction[], step, ctx.time);
      next = after;
    }
  } catch (err) {
    outcome = "failed";
    error = FlowmetalError.is(err)
      ? toWireError(err)
      : new FlowmetalError(ErrorCode.StepFailed, `a guard or action threw: ${err instanceof Error ? err.message : String(err)}`).toWire();
    // Nothing of a failed step takes effect: snapshot, timers and calls stay as they were.
    next = state.snapshot;
    w.timers = { ...state.timers };
    w.calls = { ...state.calls };
    if (input.kind === "timer") delete w.timers[input.timer];
    if (input.kind === "result") w.calls = Object.fromEntries(Object.entries(state.calls).filter(([, c]) => c.callId !== input.result.callId));
    w.effects = [];
    w.custom = [];
  }

  const effects: Effect[] = [];
  for (const e of w.effects) {
    if (!e) continue;
    const id = effectId(state.address, step, effects.length);
    const withId = { ...e, id } as Effect;
    if (withId.kind === "call") {
      const c = w.calls[withId.invokeId];
      if (c) w.calls[withId.invokeId] = { ...c, callId: id };
    }
    effects.push(withId);
  }

  const persisted = next ? persistSnapshot(next) : undefined;
  const record: StepRecord = {
    v: 1,
    actor: formatAddress(state.address),
    step,
    seq: input.seq,
    kind,
    event: stamped,
    outcome,
    value: next?.value ?? null,
    status: next?.status ?? "active",
    snapshot: persisted ?? null,
    timers: w.timers,
    calls: w.calls,
    senders,
    effects,
    version: program.version,
    epoch: ctx.epoch,
    node: ctx.node,
    time: ctx.time,
  };
  if (error) record.error = error;
  if (input.kind === "timer") record.timer = input.timer;
  if (input.kind === "result") record.callId = input.result.callId;
  if (input.kind === "send" && input.from) record.from = input.from;
  if (input.kind === "send" && input.effect) record.effect = input.effect;
  return { kind: "step", record, snapshot: next, custom: outcome === "ok" ? w.custom : [] };
}

/** The fields of a machine snapshot as XState 5 creates it (createMachineSnapshot), in its order. */
const snapshotKeys = ["status", "output", "error", "machine", "context", "_nodes", "value", "tags", "children", "historyValue", "matches", "hasTag", "can", "getMeta", "toJSON"];

/**
 * What XState's `getPersistedSnapshot` returns for a machine snapshot, built field by field: XState builds it
 * with an object rest that excludes ten keys, which V8 runs as a slow generic copy (about a twentieth of a
 * node's CPU per step). Same fields in the same order, actor refs in context replaced the same way; a
 * snapshot of any other shape (a future XState with more fields) goes to XState's own. test/node/step.test.ts
 * compares the two for machines with children, history states and refs in context.
 */
export function persistSnapshot(s: AnyMachineSnapshot): unknown {
  const own = s as unknown as Record<string, unknown>;
  let n = 0;
  for (const k in own) {
    if (k !== snapshotKeys[n]) return s.machine.getPersistedSnapshot(s);
    n++;
  }
  if (n !== snapshotKeys.length) return s.machine.getPersistedSnapshot(s);
  const children: Record<string, unknown> = {};
  for (const id in s.children) {
    const child = s.children[id] as unknown as { getPersistedSnapshot(): unknown; src: unknown; systemId: unknown; _syncSnapshot: unknown };
    children[id] = { snapshot: child.getPersistedSnapshot(), src: child.src, systemId: child.systemId, syncSnapshot: child._syncSnapshot };
  }
  return {
    status: s.status,
    output: s.output,
    error: (s as { error?: unknown }).error,
    value: s.value,
    historyValue: persistHistory(s.historyValue),
    context: persistContext(s.context),
    children,
  };
}

function persistHistory(h: unknown): Record<string, { id: string }[]> {
  const out: Record<string, { id: string }[]> = {};
  if (typeof h !== "object" || h === null) return out;
  for (const key in h) {
    const v = (h as Record<string, unknown>)[key];
    if (Array.isArray(v)) out[key] = v.map((node: { id: string }) => ({ id: node.id }));
  }
  return out;
}

/** XState's persistContext: actor refs anywhere in the context become `{ xstate$$type: 1, id }` (copies on write). */
function persistContext(part: unknown): unknown {
  let copy: Record<string, unknown> | unknown[] | undefined;
  const obj = part as Record<string, unknown>;
  for (const key in obj) {
    const value = obj[key];
    if (!value || typeof value !== "object") continue;
    let replaced: unknown;
    if ("sessionId" in value && "send" in value && "ref" in value) replaced = { xstate$$type: 1, id: (value as unknown as { id: unknown }).id };
    else {
      const inner = persistContext(value);
      if (inner === value) continue;
      replaced = inner;
    }
    copy ??= Array.isArray(obj) ? obj.slice() : { ...obj };
    (copy as Record<string, unknown>)[key] = replaced;
  }
  return copy ?? part;
}

/** Applies a persisted record to the in-memory actor. */
export function advance(state: ActorState, record: StepRecord, snapshot: AnyMachineSnapshot | undefined, journalSeq: number): void {
  state.step = record.step;
  state.seq = record.seq;
  state.journalSeq = journalSeq;
  state.snapshot = snapshot;
  state.timers = record.timers;
  state.calls = record.calls;
  state.senders = record.senders ?? {};
  state.last = record;
}
