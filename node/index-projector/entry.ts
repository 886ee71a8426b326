// node/index-projector/entry.ts — the actor index's record shape, its KV bucket and key names, and state paths.
import type { IndexEntry, StepRecord } from "../../protocol/records.js";

export type { IndexEntry };

/** The index bucket of a subject prefix: `fm_index` for `fm`. */
export function indexBucket(prefix: string): string {
  return `${prefix}_index`;
}

/** The durable consumer on the journal stream that feeds the index, shared by every projector. */
export const indexConsumer = "index";

/** The KV key of an actor: `<program>.<key>` (both are subject tokens already). */
export function indexKey(program: string, key: string): string {
  return `${program}.${key}`;
}

/** The index entry a journal record leads to; undefined for a record that is not a step of an actor. */
export function entryOf(rec: StepRecord): IndexEntry | undefined {
  const slash = typeof rec.actor === "string" ? rec.actor.indexOf("/") : -1;
  if (slash <= 0 || !Number.isInteger(rec.step)) return undefined;
  return { program: rec.actor.slice(0, slash), key: rec.actor.slice(slash + 1), value: rec.value, status: rec.status, step: rec.step, updated: rec.time };
}

/**
 * Every state node an actor is in, as dotted paths from the root: `"a"` → `["a"]`,
 * `{ a: "b" }` → `["a", "a.b"]`, parallel `{ x: "1", y: "2" }` → `["x", "x.1", "y", "y.2"]`. A machine without
 * child states (value `{}`) is in none.
 */
export function statePaths(value: unknown, prefix = ""): string[] {
  if (typeof value === "string") return [prefix + value];
  if (typeof value !== "object" || value === null) return [];
  const out: string[] = [];
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const p = prefix + k;
    out.push(p);
    out.push(...statePaths(v, `${p}.`));
  }
  return out;
}

/** Parses a stored index value; undefined when it is not one (a foreign write). */
export function parseEntry(data: Uint8Array): IndexEntry | undefined {
  try {
    const e = JSON.parse(new TextDecoder().decode(data)) as Partial<IndexEntry>;
    if (typeof e.program !== "string" || typeof e.key !== "string" || typeof e.step !== "number" || typeof e.status !== "string") return undefined;
    return { program: e.program, key: e.key, value: e.value ?? null, status: e.status, step: e.step, updated: typeof e.updated === "number" ? e.updated : 0 };
  } catch {
    return undefined;
  }
}

/** The stored form of an entry: JSON. */
export function encodeEntry(e: IndexEntry): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(e));
}
