// node/index.ts — the public face of the node: createNode, the program SDK and the seams the cluster implements.
export { createNode, singleNodePlacement, type FlowmetalNode, type NodeOptions, type Placement, type ShardEvent } from "./node.js";
export { loadModules, type LoadedModules } from "./loader.js";
export { createFunctionWorker, type FunctionWorker, type WorkerOptions } from "../protocol/worker.js";
export { createLogger, silentLogger, type Logger } from "./logger.js";
export { ensureStreams, type StreamOptions } from "./streams.js";
export { checkReplay, type ReplayReport } from "./replay.js";
export * from "./sdk.js";
