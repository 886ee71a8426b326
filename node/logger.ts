// node/logger.ts — pino for nodes and the CLI: JSON lines on stderr, constant lowercase messages, data in fields.
import { pino } from "pino";
import type { Logger } from "../protocol/logger.js";

export { silentLogger, type Logger } from "../protocol/logger.js";

/** A pino logger writing JSON lines to stderr. @default level "info" */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({ level: options.level ?? "info", name: options.name ?? "flowmetal" }, pino.destination(2));
}
