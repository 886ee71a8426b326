// node/admin/statechart.ts — a program's statechart as plain data (states, transitions, invokes), read from its XState machine.
import type { AnyStateNode } from "xstate";
import type { ProgramDefinition } from "../program.js";

/** One transition of a state node. */
export interface StatechartTransition {
  /** The event descriptor as XState has it (`PLACE`, `xstate.done.actor.charge`, `xstate.after.…`, `""` for `always`). */
  event: string;
  /** For people: `PLACE`, `after 5s`, `after shippingDeadline`, `done: charge`, `error: charge`, `always`. */
  label: string;
  kind: "event" | "after" | "done" | "error" | "always";
  /** Ids of the target state nodes; empty for a transition that only runs actions. */
  targets: string[];
  guard?: string;
  actions: string[];
  reenter: boolean;
}

/** One state node and its children. */
export interface StatechartNode {
  /** XState id, e.g. `order.awaitingPayment`. */
  id: string;
  key: string;
  /** Dotted path from the root (`""` for the root): what `statePaths` of a state value yields. */
  path: string;
  type: "atomic" | "compound" | "parallel" | "final" | "history";
  /** Id of the initial child of a compound state. */
  initial?: string;
  history?: "shallow" | "deep";
  description?: string;
  tags: string[];
  entry: string[];
  exit: string[];
  invoke: { id: string; src: string }[];
  transitions: StatechartTransition[];
  states: StatechartNode[];
}

/** A program's statechart as data. */
export interface Statechart {
  program: string;
  version: string;
  description: string | null;
  root: StatechartNode;
}

function nameOf(x: unknown, fallback: string): string {
  if (typeof x === "string") return x;
  if ((typeof x === "object" || typeof x === "function") && x !== null) {
    const t = (x as { type?: unknown }).type;
    if (typeof t === "string") return t;
    const n = (x as { name?: unknown }).name;
    if (typeof n === "string" && n.length > 0) return n;
  }
  return fallback;
}

function formatMs(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms % 1000 === 0) return `${ms / 1000}s`;
  return `${ms}ms`;
}

function transitionsOf(node: AnyStateNode): StatechartTransition[] {
  const delays = new Map<string, string>();
  for (const a of node.after) {
    const d = a.delay;
    delays.set(String(a.eventType), typeof d === "number" ? formatMs(d) : typeof d === "string" ? d : "(computed)");
  }
  const out: StatechartTransition[] = [];
  const add = (event: string, t: { target?: readonly AnyStateNode[] | undefined; guard?: unknown; actions: readonly unknown[]; reenter: boolean }) => {
    let kind: StatechartTransition["kind"] = "event";
    let label = event;
    if (event === "") {
      kind = "always";
      label = "always";
    } else if (delays.has(event)) {
      kind = "after";
      label = `after ${delays.get(event)}`;
    } else if (event.startsWith("xstate.done.actor.")) {
      kind = "done";
      label = `done: ${event.slice("xstate.done.actor.".length)}`;
    } else if (event.startsWith("xstate.error.actor.")) {
      kind = "error";
      label = `error: ${event.slice("xstate.error.actor.".length)}`;
    }
    const tr: StatechartTransition = {
      event,
      label,
      kind,
      targets: (t.target ?? []).map((n) => n.id),
      actions: t.actions.map((a) => nameOf(a, "action")),
      reenter: t.reenter,
    };
    if (t.guard !== undefined) tr.guard = nameOf(t.guard, "guard");
    out.push(tr);
  };
  for (const [event, ts] of node.transitions) for (const t of ts) add(event, t);
  for (const t of node.always ?? []) add("", t);
  return out;
}

function nodeOf(node: AnyStateNode): StatechartNode {
  const n: StatechartNode = {
    id: node.id,
    key: node.key,
    path: node.path.join("."),
    type: node.type,
    tags: [...node.tags],
    entry: node.entry.map((a) => nameOf(a, "action")),
    exit: node.exit.map((a) => nameOf(a, "action")),
    invoke: node.invoke.map((i) => ({ id: i.id, src: typeof i.src === "string" ? i.src : nameOf(i.src, i.id) })),
    transitions: transitionsOf(node),
    states: Object.values(node.states as Record<string, AnyStateNode>).map(nodeOf),
  };
  const initial = node.type === "compound" ? node.initial?.target?.[0]?.id : undefined;
  if (initial) n.initial = initial;
  // XState's default history is shallow (its `history` is false then).
  if (node.type === "history") n.history = node.history === "deep" ? "deep" : "shallow";
  if (node.description) n.description = node.description;
  return n;
}

/** The statechart of a program, from its machine definition: nested, parallel, history and final states included. */
export function statechartOf(program: ProgramDefinition): Statechart {
  return { program: program.name, version: program.version, description: program.description ?? null, root: nodeOf(program.machine.root) };
}
