// protocol/logger.ts — the logger seam every layer accepts: pino's shape, no dependency on pino.

/** The subset of pino's logger Flowmetal uses; pass a pino (or compatible) instance. */
export interface Logger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

const noop = () => {};
/** A logger that drops everything. */
export const silentLogger: Logger = { debug: noop, info: noop, warn: noop, error: noop, child: () => silentLogger };
