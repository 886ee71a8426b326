// node/program.ts — the program SDK: defineProgram, defineFunction, functionRef and the send-to-actor action.
import {
  emit,
  fromPromise,
  type ActionFunction,
  type AnyEventObject,
  type AnyStateMachine,
  type EventObject,
  type MachineContext,
  type ParameterizedObject,
  type PromiseActorLogic,
  type SendExpr,
} from "xstate";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import { resolveRetryPolicy, type RetryPolicy } from "../protocol/retry.js";
import { parseActorAddress, parseFunctionName, parseProgramName, type ProgramName } from "../protocol/subjects.js";
import type { CallContext, FunctionHandler, FunctionImpl } from "../protocol/worker.js";

export type { CallContext, FunctionImpl } from "../protocol/worker.js";
export type { RetryPolicy } from "../protocol/retry.js";

const programMark = Symbol.for("flowmetal.program");
const functionMark = Symbol.for("flowmetal.function");

/** A durable program: a named, versioned XState v5 machine. Inert until a node loads it. */
export interface ProgramDefinition<TMachine extends AnyStateMachine = AnyStateMachine> {
  readonly [programMark]: true;
  readonly name: ProgramName;
  readonly version: string;
  readonly machine: TMachine;
  readonly description: string | undefined;
}

/**
 * Declares a program. Export the result from a module and give the module to `flowmetal dev` or
 * `flowmetal node`; every exported program is loaded.
 *
 * Rules the machine must follow to be durable:
 * - guards and `assign` are pure: read time from `stepTime(event)`, never `Date.now()`;
 * - anything that must happen is an effect (`emit`, `sendToActor`, delays, `invoke`); custom action
 *   functions run in the node after the step is persisted, best-effort, and may run again on recovery
 *   (or not at all when the node dies right after the step);
 * - the actor's input (for a `context` factory) is the event that created it.
 *
 * @example
 * export const counter = defineProgram({
 *   name: "counter", version: "1",
 *   machine: createMachine({ context: { n: 0 }, on: { INC: { actions: assign({ n: ({ context }) => context.n + 1 }) } } }),
 * });
 */
export function defineProgram<TMachine extends AnyStateMachine>(def: {
  name: string;
  version: string;
  machine: TMachine;
  description?: string;
}): ProgramDefinition<TMachine> {
  const name = parseProgramName(def.name);
  if (typeof def.version !== "string" || def.version.length === 0) {
    throw new FlowmetalError(ErrorCode.InvalidModule, `program '${name}' needs a non-empty string version`);
  }
  if (!def.machine || typeof (def.machine as { transition?: unknown }).transition !== "function") {
    throw new FlowmetalError(ErrorCode.InvalidModule, `program '${name}': machine is not an XState v5 machine (use createMachine or setup().createMachine)`);
  }
  return Object.freeze({ [programMark]: true as const, name, version: def.version, machine: def.machine, description: def.description });
}

/** True for values made by {@link defineProgram}. */
export function isProgram(value: unknown): value is ProgramDefinition {
  return typeof value === "object" && value !== null && (value as Record<symbol, unknown>)[programMark] === true;
}

export interface FunctionOptions {
  /** Retry policy for retryable failures (anything thrown that is not a terminal error). */
  retry?: Partial<RetryPolicy>;
  /** Time limit of one attempt; the attempt's `signal` aborts then. @default 30000 */
  timeoutMs?: number;
}

/** Metadata Flowmetal keeps on a function's actor logic: what a worker needs to run it. */
export interface FunctionMeta extends FunctionHandler {
  /** Absent for functions implemented elsewhere (another process or language). */
  readonly impl: FunctionImpl<unknown, unknown> | undefined;
}

export type FunctionLogic<TInput, TOutput> = PromiseActorLogic<TOutput, TInput> & { readonly [functionMark]: FunctionMeta };

function makeFunction<TInput, TOutput>(
  name: string,
  impl: FunctionImpl<TInput, TOutput> | undefined,
  options: FunctionOptions,
): FunctionLogic<TInput, TOutput> {
  const fnName = parseFunctionName(name);
  const timeoutMs = options.timeoutMs ?? 30_000;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    throw new FlowmetalError(ErrorCode.InvalidModule, `function '${fnName}': timeoutMs must be a positive integer`);
  }
  const meta: FunctionMeta = Object.freeze({
    name: fnName,
    retry: resolveRetryPolicy(options.retry),
    timeoutMs,
    impl: impl as FunctionImpl<unknown, unknown> | undefined,
  });
  // A real promise logic, so the same machine also runs under plain XState (handy in unit tests).
  const logic = fromPromise<TOutput, TInput>(async ({ input, signal }) => {
    if (!impl) throw new FlowmetalError(ErrorCode.UnknownFunction, `function '${fnName}' is implemented by a remote worker`);
    return impl(input, { signal, callId: "local", attempt: 1, actor: "local/local" });
  });
  return Object.assign(logic, { [functionMark]: meta });
}

/**
 * Declares a function that programs can `invoke`. Put it in `setup({ actors: { charge } })` and invoke it
 * by that key. The node runs it in-process workers (any number of nodes may); a call is retried on
 * anything thrown except a terminal error (see {@link terminalError}); its result is persisted once and
 * delivered as `xstate.done.actor.<id>` / `xstate.error.actor.<id>`.
 *
 * @example
 * export const charge = defineFunction("payments.charge", async (input: { amount: number }, { callId }) =>
 *   psp.charge(input.amount, { idempotencyKey: callId }), { retry: { maxAttempts: 5 }, timeoutMs: 10_000 });
 */
export function defineFunction<TInput, TOutput>(
  name: string,
  impl: FunctionImpl<TInput, TOutput>,
  options: FunctionOptions = {},
): FunctionLogic<TInput, TOutput> {
  if (typeof impl !== "function") {
    throw new FlowmetalError(ErrorCode.InvalidModule, `function '${name}': implementation must be a function`);
  }
  return makeFunction(name, impl, options);
}

/**
 * A function implemented outside this process — by a worker in any language speaking PROTOCOL.md.
 * Use it like {@link defineFunction}'s result; the node publishes calls and never runs it itself.
 */
export function functionRef<TInput = unknown, TOutput = unknown>(name: string, options: FunctionOptions = {}): FunctionLogic<TInput, TOutput> {
  return makeFunction<TInput, TOutput>(name, undefined, options);
}

/** The function metadata of an actor logic, if it is a Flowmetal function. */
export function functionMetaOf(logic: unknown): FunctionMeta | undefined {
  if (typeof logic !== "object" || logic === null) return undefined;
  return (logic as Record<symbol, FunctionMeta | undefined>)[functionMark];
}

/** True for values made by {@link defineFunction} or {@link functionRef}. */
export function isFunction(value: unknown): value is FunctionLogic<unknown, unknown> {
  return functionMetaOf(value) !== undefined;
}

/** An error a function throws to say "do not retry": it becomes `xstate.error.actor.<id>` at once. */
export function terminalError(message: string, options: ErrorOptions = {}): FlowmetalError {
  return new FlowmetalError(ErrorCode.FunctionFailed, message, { ...options, retryable: false });
}

/** The reserved emitted-event type that carries a message to another actor. */
export const sendEventType = "$fm.send";

type EventOrExpr<TContext, TEvent extends EventObject> =
  | EventObject
  | ((args: { context: TContext; event: TEvent }) => EventObject);

/**
 * An action that sends `event` to the actor at `address` (`<program>/<key>`, or a function of context and
 * event returning one) as a durable effect: it is delivered once the step is persisted, exactly once per
 * step even if the node dies.
 *
 * @example
 * on: { SHIPPED: { actions: sendToActor("invoice/main", ({ context }) => ({ type: "BILL", order: context.id })) } }
 */
export function sendToActor<
  TContext extends MachineContext,
  TExpressionEvent extends EventObject,
  TParams extends ParameterizedObject["params"] | undefined,
  TEvent extends EventObject,
  TEmitted extends AnyEventObject,
>(
  address: string | ((args: { context: TContext; event: TExpressionEvent }) => string),
  event: EventOrExpr<TContext, TExpressionEvent>,
): ActionFunction<TContext, TExpressionEvent, TEvent, TParams, never, never, never, never, TEmitted> {
  if (typeof address === "string") parseActorAddress(address);
  const expr = ({ context, event: ev }: { context: TContext; event: TExpressionEvent }) => {
    const to = typeof address === "function" ? address({ context, event: ev }) : address;
    const payload = typeof event === "function" ? event({ context, event: ev }) : event;
    return { type: sendEventType, to, event: payload };
  };
  // Carried as an emitted event of a reserved type, which the step engine turns into a send effect; it is
  // never delivered to emit listeners, so it need not be one of the machine's declared emitted events.
  return emit<TContext, TExpressionEvent, TParams, TEvent, TEmitted>(expr as unknown as SendExpr<TContext, TExpressionEvent, TParams, TEmitted, TEvent>);
}

/** Metadata the node stamps into every event before the step: read time from here, never from the clock. */
export interface StepMeta {
  /** Wall-clock time the step was taken, ms since the epoch. */
  readonly time: number;
  /** The step number this event produces. */
  readonly step: number;
  /** The inbox sequence of the event. */
  readonly seq: number;
}

/** The step metadata on an event (see {@link StepMeta}); throws if the event did not come through a node. */
export function stepMeta(event: EventObject): StepMeta {
  const m = (event as { $fm?: StepMeta }).$fm;
  if (!m) throw new FlowmetalError(ErrorCode.InvalidEvent, `event '${event.type}' carries no step metadata`);
  return m;
}

/** The time of the step processing `event`, in ms since the epoch: the deterministic `Date.now()`. */
export function stepTime(event: EventObject): number {
  return stepMeta(event).time;
}
