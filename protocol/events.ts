// protocol/events.ts — what counts as an event from outside: an object with a non-reserved string `type`.
import { ErrorCode, FlowmetalError } from "./errors.js";
import type { WireEvent } from "./records.js";

const reservedPrefixes = ["xstate.", "$fm"];

/**
 * Checks an event that arrives from outside (a client, a webhook, another language). Throws
 * `FM_ERR_INVALID_EVENT` when it is not an object with a `type` of 1-256 characters, or when it uses a
 * reserved type (`xstate.*`, `$fm*`) or the reserved `$fm` field.
 */
export function parseEvent(value: unknown): WireEvent {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new FlowmetalError(ErrorCode.InvalidEvent, `an event must be a JSON object with a string 'type', got ${Array.isArray(value) ? "an array" : value === null ? "null" : typeof value}`);
  }
  const type = (value as { type?: unknown }).type;
  if (typeof type !== "string" || type.length === 0 || type.length > 256) {
    throw new FlowmetalError(ErrorCode.InvalidEvent, "an event needs a 'type' string of 1-256 characters");
  }
  if (reservedPrefixes.some((p) => type.startsWith(p))) {
    throw new FlowmetalError(ErrorCode.InvalidEvent, `event type '${type}' is reserved (types starting with 'xstate.' or '$fm' are made by Flowmetal)`);
  }
  if (Object.hasOwn(value, "$fm")) {
    throw new FlowmetalError(ErrorCode.InvalidEvent, `event '${type}' has a '$fm' field, which is reserved for step metadata`);
  }
  return value as WireEvent;
}
