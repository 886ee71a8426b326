// node/logger.ts — the logger seam: pino, injected; constant lowercase messages, data in fields.
import { pino } from "pino";

/** The subset of pino's logger Flowmetal uses; pass your own pino (or compatible) instance. */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** A pino logger writing JSON lines to stderr. @default level "info" */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({ level: options.level ?? "info", name: options.name ?? "flowmetal" }, pino.destination(2));
}

/** A logger that drops everything. */
export const silentLogger: Logger = pino({ level: "silent" });
