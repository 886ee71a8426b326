// protocol/index.ts — the wire contract: subjects, tokens, codecs, records and the error catalogue.
export * from "./errors.js";
export * from "./subjects.js";
export * from "./codec.js";
export * from "./events.js";
export type * from "./records.js";
