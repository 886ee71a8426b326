// node/sdk.ts — what program modules import from "flowmetal": defining programs and functions.
export {
  defineProgram,
  defineFunction,
  functionRef,
  sendToActor,
  stepTime,
  stepMeta,
  terminalError,
  isProgram,
  isFunction,
  type ProgramDefinition,
  type FunctionLogic,
  type FunctionOptions,
  type RetryPolicy,
  type CallContext,
  type StepMeta,
} from "./program.js";
export { FlowmetalError, ErrorCode } from "../protocol/errors.js";
export { httpCallback, httpRequest, type HttpCallbackInput, type HttpCallbackOutput, type HttpRequestInput, type HttpResponse } from "./connector-refs.js";
