// protocol/errors.ts — the error catalogue: one class, identity by stable code, the same on every wire.

/**
 * Every error Flowmetal puts on the wire has one of these codes. Codes are never reused or renamed;
 * PROTOCOL.md lists them (a test keeps the two equal).
 */
export const ErrorCode = {
  /** A program or actor-key token does not match `[A-Za-z0-9_-]{1,128}`. */
  InvalidToken: "FM_ERR_INVALID_TOKEN",
  /** An actor address is not `<program>/<key>`. */
  InvalidAddress: "FM_ERR_INVALID_ADDRESS",
  /** No program with that name is loaded by the node. */
  UnknownProgram: "FM_ERR_UNKNOWN_PROGRAM",
  /** No actor with that address has taken a step yet. */
  UnknownActor: "FM_ERR_UNKNOWN_ACTOR",
  /** A payload could not be decoded (bad JSON or CBOR, wrong shape, unsupported content type). */
  MalformedPayload: "FM_ERR_MALFORMED_PAYLOAD",
  /** A payload is larger than the configured limit. */
  PayloadTooLarge: "FM_ERR_PAYLOAD_TOO_LARGE",
  /** A payload nests deeper than the configured limit. */
  PayloadTooDeep: "FM_ERR_PAYLOAD_TOO_DEEP",
  /** An event has no string `type`, or a reserved one. */
  InvalidEvent: "FM_ERR_INVALID_EVENT",
  /** The actor's current state has no transition for the event; it is recorded as an ignored step. */
  EventNotAccepted: "FM_ERR_EVENT_NOT_ACCEPTED",
  /** A guard or action threw while the step was computed; the failure is recorded as a step. */
  StepFailed: "FM_ERR_STEP_FAILED",
  /** The actor reached a final state; it accepts no more events. */
  ActorDone: "FM_ERR_ACTOR_DONE",
  /** Replaying the journal through the program gave a different snapshot than the one recorded. */
  NonDeterministic: "FM_ERR_NON_DETERMINISTIC",
  /** A journal append was fenced off: another writer owns the actor now. */
  StaleOwner: "FM_ERR_STALE_OWNER",
  /** A function call failed and will not be retried (its attempts are used up, or the error was terminal). */
  FunctionFailed: "FM_ERR_FUNCTION_FAILED",
  /** A function call took longer than its timeout. */
  FunctionTimeout: "FM_ERR_FUNCTION_TIMEOUT",
  /** No function with that name is registered with the worker. */
  UnknownFunction: "FM_ERR_UNKNOWN_FUNCTION",
  /** An API request was missing a field or had one of the wrong type. */
  BadRequest: "FM_ERR_BAD_REQUEST",
  /** An API verb that no node serves. */
  UnknownVerb: "FM_ERR_UNKNOWN_VERB",
  /** The operation did not finish in time; whether it took effect is unknown, retry with the same msgId. */
  Timeout: "FM_ERR_TIMEOUT",
  /** NATS or JetStream could not be reached or did not persist the request; retry. */
  Unavailable: "FM_ERR_UNAVAILABLE",
  /** The nats-server on PATH is missing or too old. */
  ServerVersion: "FM_ERR_SERVER_VERSION",
  /** A module given to the node could not be loaded, or exports something invalid. */
  InvalidModule: "FM_ERR_INVALID_MODULE",
  /** A program uses an XState feature Flowmetal cannot make durable. */
  Unsupported: "FM_ERR_UNSUPPORTED",
  /** Missing or wrong credentials: a bearer token, a callback token, a provider signature. */
  Unauthorized: "FM_ERR_UNAUTHORIZED",
  /** A callback token past its expiry, or a signed request whose timestamp is outside the tolerance. */
  Expired: "FM_ERR_EXPIRED",
  /** A URL the HTTP connector refuses to call (loopback, private, link-local… addresses, or a scheme other than http/https). */
  Forbidden: "FM_ERR_FORBIDDEN",
  /** Anything else: a bug. Details stay in the node's log, never on the wire. */
  Internal: "FM_ERR_INTERNAL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const retryableByDefault: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.Timeout,
  ErrorCode.FunctionTimeout,
  ErrorCode.Unavailable,
  ErrorCode.StaleOwner,
]);

/** The shape of every error on the wire. */
export interface WireError {
  code: ErrorCode;
  message: string;
  retryable: boolean;
  /** Extra machine-readable facts, e.g. `{ step: 4 }` for an ignored event. */
  details?: Record<string, unknown>;
}

/** Flowmetal's one error class. Match by `code` (see {@link FlowmetalError.is}), never by `instanceof` across the wire. */
export class FlowmetalError extends Error {
  override name = "FlowmetalError";
  readonly retryable: boolean;
  readonly details: Record<string, unknown> | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options: ErrorOptions & { retryable?: boolean; details?: Record<string, unknown> } = {},
  ) {
    super(message, options);
    this.retryable = options.retryable ?? retryableByDefault.has(code);
    this.details = options.details;
  }

  /** True when `err` carries a Flowmetal code (optionally a given one), whatever its class. */
  static is(err: unknown, code?: ErrorCode): err is FlowmetalError {
    const c = (err as { code?: unknown } | null)?.code;
    return typeof c === "string" && c.startsWith("FM_ERR_") && (code === undefined || c === code);
  }

  toWire(): WireError {
    const w: WireError = { code: this.code, message: this.message, retryable: this.retryable };
    if (this.details) w.details = this.details;
    return w;
  }

  /** Rebuilds an error received on the wire; unknown shapes become an internal error. */
  static fromWire(w: unknown): FlowmetalError {
    const o = (w ?? {}) as Partial<WireError>;
    const known = typeof o.code === "string" && allCodes.has(o.code);
    const options: { retryable?: boolean; details?: Record<string, unknown> } = {};
    if (typeof o.retryable === "boolean") options.retryable = o.retryable;
    if (o.details && typeof o.details === "object") options.details = o.details;
    return new FlowmetalError(
      known ? (o.code as ErrorCode) : ErrorCode.Internal,
      typeof o.message === "string" ? o.message : "error without a message",
      options,
    );
  }
}

const allCodes: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/** Every catalogued code, for documentation and tests. */
export const allErrorCodes: readonly ErrorCode[] = Object.values(ErrorCode);

/**
 * Turns anything thrown into something safe to put on the wire: Flowmetal errors keep their code and
 * message, everything else becomes "internal error" (the stack stays in the log).
 */
export function toWireError(err: unknown): WireError {
  if (err instanceof FlowmetalError) return err.toWire();
  if (FlowmetalError.is(err)) return FlowmetalError.fromWire(err).toWire();
  return { code: ErrorCode.Internal, message: "internal error", retryable: false };
}
