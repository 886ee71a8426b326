// node/failpoints.ts — crash injection for the crash-matrix tests: SIGKILL this process at a named point of a step.
// Off unless configured; the CLI reads FLOWMETAL_FAILPOINTS ("after-append=0.05,before-ack=0.02").

/** The points where a crash can be injected: in a step, in a function call, and in the callback connector between persist and reply. */
export const failpointNames = ["before-append", "after-append", "before-ack", "mid-call", "after-persist"] as const;
export type FailpointName = (typeof failpointNames)[number];

let active: Map<string, number> | undefined;

/** Parses and arms `name=probability` pairs; throws on unknown names or probabilities outside 0..1. */
export function configureFailpoints(spec: string | undefined): void {
  if (!spec) {
    active = undefined;
    return;
  }
  const m = new Map<string, number>();
  for (const part of spec.split(",").map((s) => s.trim()).filter(Boolean)) {
    const [name, p] = part.split("=");
    const prob = Number(p);
    if (!failpointNames.includes(name as FailpointName) || !(prob >= 0 && prob <= 1)) {
      throw new Error(`bad failpoint '${part}': use one of ${failpointNames.join(", ")} with a probability from 0 to 1`);
    }
    m.set(name as string, prob);
  }
  active = m;
}

/** Kills the process with SIGKILL, with the configured probability, when armed. */
export function failpoint(name: FailpointName): void {
  if (!active) return;
  const p = active.get(name);
  if (p !== undefined && Math.random() < p) process.kill(process.pid, "SIGKILL");
}
