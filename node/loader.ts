// node/loader.ts — loads program modules (.ts through tsx, .js natively) and collects what they export.
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";
import { functionMetaOf, isProgram, type FunctionMeta, type ProgramDefinition } from "./program.js";

export interface LoadedModules {
  programs: Map<string, ProgramDefinition>;
  /** Functions with an implementation, to run in this process: exported ones and those programs use. */
  functions: Map<string, FunctionMeta>;
  /** Every exported value, to hand to `createNode({ modules })`. */
  exports: unknown[];
}

/** Adds programs and their functions to `into`; throws `FM_ERR_INVALID_MODULE` on duplicate names. */
export function collect(values: Iterable<unknown>, into: LoadedModules, origin: string): void {
  const addFunction = (meta: FunctionMeta) => {
    if (!meta.impl) return;
    const prev = into.functions.get(meta.name);
    if (prev && prev.impl !== meta.impl) {
      throw new FlowmetalError(ErrorCode.InvalidModule, `function '${meta.name}' is defined twice (again in ${origin})`);
    }
    into.functions.set(meta.name, meta);
  };
  for (const v of values) {
    if (isProgram(v)) {
      const prev = into.programs.get(v.name);
      if (prev && prev !== v) throw new FlowmetalError(ErrorCode.InvalidModule, `program '${v.name}' is defined twice (again in ${origin})`);
      into.programs.set(v.name, v);
      const actors = (v.machine.implementations as { actors?: Record<string, unknown> }).actors ?? {};
      for (const logic of Object.values(actors)) {
        const meta = functionMetaOf(logic);
        if (meta) addFunction(meta);
      }
    } else {
      const meta = functionMetaOf(v);
      if (meta) addFunction(meta);
    }
  }
}

/** Imports each module and collects every exported program and function. */
export async function loadModules(paths: readonly string[]): Promise<LoadedModules> {
  const out: LoadedModules = { programs: new Map(), functions: new Map(), exports: [] };
  for (const p of paths) {
    const url = pathToFileURL(resolve(p)).href;
    let mod: Record<string, unknown>;
    try {
      if (/\.(c|m)?tsx?$/.test(p)) {
        const { tsImport } = await import("tsx/esm/api");
        mod = (await tsImport(url, import.meta.url)) as Record<string, unknown>;
      } else {
        mod = (await import(url)) as Record<string, unknown>;
      }
    } catch (err) {
      throw new FlowmetalError(ErrorCode.InvalidModule, `cannot load module ${p}: ${(err as Error).message}`, { cause: err });
    }
    const before = out.programs.size + out.functions.size;
    collect(Object.values(mod), out, p);
    out.exports.push(...Object.values(mod));
    if (out.programs.size + out.functions.size === before) {
      throw new FlowmetalError(ErrorCode.InvalidModule, `module ${p} exports no program (defineProgram) or function (defineFunction)`);
    }
  }
  return out;
}
