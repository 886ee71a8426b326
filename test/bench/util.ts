// test/bench/util.ts — small helpers for the benchmark script: pipelining, percentiles, memory, tables.
import { readFileSync, readdirSync } from "node:fs";
import { performance } from "node:perf_hooks";

/** Runs `fn(0..count-1)` with at most `window` calls in flight (a sliding window, not lock-step batches). */
export async function pipelined(count: number, window: number, fn: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(window, count)) }, lane));
}

/**
 * A benchmark count from environment variable `name` (a positive number, an integer when `integer`), or
 * else `full`, or `small` for a `--quick` run. Bad values are refused with the variable's name.
 */
export function envCount(name: string, full: number, small: number, quick: boolean, integer = false): number {
  const v = process.env[name];
  if (v !== undefined && v !== "") {
    const n = Number(v);
    if (integer ? !Number.isInteger(n) || n <= 0 : !Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive ${integer ? "integer" : "number"}, got '${v}'`);
    return n;
  }
  return quick ? small : full;
}

/** Nearest-rank percentile of an ascending array (p in 0..100). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function median(values: readonly number[]): number {
  return percentile([...values].sort((a, b) => a - b), 50);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until `cond` holds, polling every `intervalMs`; throws after `timeoutMs`. */
export async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs: number, intervalMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(intervalMs);
  }
}

export interface MemorySample {
  heapUsedMiB: number;
  rssMiB: number;
}

const mib = (b: number) => round(b / 1024 / 1024, 1);

/** Collects garbage when the process runs with --expose-gc, then samples memory. */
export function memory(collect = true): MemorySample {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (collect && gc) {
    gc();
    gc();
  }
  const m = process.memoryUsage();
  return { heapUsedMiB: mib(m.heapUsed), rssMiB: mib(m.rss) };
}

export function round(x: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function fmt(x: number, digits = 0): string {
  if (!Number.isFinite(x)) return String(x);
  return round(x, digits).toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Prints rows as an aligned two-or-more-column table. */
export function table(title: string, rows: readonly (readonly string[])[]): void {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  console.log(`\n${title}`);
  console.log("-".repeat(Math.min(100, widths.reduce((a, b) => a + b + 3, 0))));
  for (const r of rows) {
    console.log(r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join("   "));
  }
}

/** CPU seconds used so far by the nats-server started by this process (Linux /proc; undefined elsewhere). */
function serverCpuSeconds(): number | undefined {
  try {
    for (const d of readdirSync("/proc")) {
      if (!/^\d+$/.test(d)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${d}/stat`, "utf8");
      } catch {
        continue;
      }
      const close = stat.lastIndexOf(")");
      const comm = stat.slice(stat.indexOf("(") + 1, close);
      const f = stat.slice(close + 2).split(" "); // f[0] is field 3 (state)
      if (comm !== "nats-server" || Number(f[1]) !== process.pid) continue;
      return (Number(f[11]) + Number(f[12])) / 100; // utime + stime, in USER_HZ (100 on Linux)
    }
  } catch {
    return undefined;
  }
  return undefined;
}

export interface CpuShare {
  /** CPU time of this process (node + benchmark driver) per wall second, in % of one core. */
  processPct: number;
  /** CPU time of nats-server per wall second, in % of one core; null when it cannot be read. */
  serverPct: number | null;
  /** The same as CPU seconds: divided by the operations done, they are less sensitive to other load than rates. */
  processCpuSeconds: number;
  serverCpuSeconds: number | null;
}

/** CPU microseconds per operation of this process and of nats-server. */
export function cpuPerOp(c: CpuShare, ops: number): { processUs: number; serverUs: number | null } {
  return { processUs: round((c.processCpuSeconds * 1e6) / ops, 1), serverUs: c.serverCpuSeconds === null ? null : round((c.serverCpuSeconds * 1e6) / ops, 1) };
}

/** Starts measuring CPU use of this process and of its nats-server; call the result to stop. */
export function cpuMeter(): () => CpuShare {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const s0 = serverCpuSeconds();
  return () => {
    const wall = (performance.now() - t0) / 1000;
    const c = process.cpuUsage(c0);
    const s1 = serverCpuSeconds();
    const own = (c.user + c.system) / 1e6;
    const server = s0 === undefined || s1 === undefined ? null : s1 - s0;
    return {
      processPct: round((own / wall) * 100),
      serverPct: server === null ? null : round((server / wall) * 100),
      processCpuSeconds: round(own, 3),
      serverCpuSeconds: server === null ? null : round(server, 2),
    };
  };
}
