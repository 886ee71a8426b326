// test/interop/support.ts — runs the foreign-language programs of the interop tests as child processes.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

export const interopDir = fileURLToPath(new URL(".", import.meta.url));
export const pythonDir = fileURLToPath(new URL("./python/", import.meta.url));
export const goModuleDir = fileURLToPath(new URL("./go/", import.meta.url));

function works(cmd: string, args: string[]): boolean {
  const r = spawnSync(cmd, args, { stdio: "ignore" });
  return r.error === undefined && r.status === 0;
}

/**
 * Why the interop tests cannot run here, or undefined when they can. Only a missing toolchain is a reason:
 * missing packages (nats-py, cbor2, Go modules) are installed by .ci/run and make the tests fail, not skip.
 */
export function missingToolchains(): string | undefined {
  const missing: string[] = [];
  if (!works("python3", ["--version"])) missing.push("python3 is not on PATH");
  if (!works("go", ["version"])) missing.push("go is not on PATH");
  return missing.length ? missing.join("; ") : undefined;
}

/** One JSON line a foreign program printed. */
export interface LogLine {
  event: string;
  t: number;
  [k: string]: unknown;
}

/** A long-running foreign program (a function worker) whose stdout is JSON lines. */
export interface ForeignProcess extends AsyncDisposable {
  readonly name: string;
  readonly lines: LogLine[];
  /** The stderr tail, for failure messages. */
  stderr(): string;
  /** Waits for a line matching `pred`; fails early with stderr if the process exits. */
  waitForLine(pred: (l: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  /** Lines about one call (`callId` field), in order. */
  callLines(callId: string): LogLine[];
}

export async function startForeign(name: string, cmd: string, args: string[], opts: { cwd?: string } = {}): Promise<ForeignProcess> {
  const proc: ChildProcess = spawn(cmd, args, { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
  const lines: LogLine[] = [];
  let err = "";
  let out = "";
  let exit: string | undefined;
  proc.stdout!.setEncoding("utf8").on("data", (d: string) => {
    out += d;
    let i: number;
    while ((i = out.indexOf("\n")) >= 0) {
      const line = out.slice(0, i);
      out = out.slice(i + 1);
      if (!line.trim()) continue;
      try {
        lines.push(JSON.parse(line) as LogLine);
      } catch {
        err = (err + `[stdout] ${line}\n`).slice(-8000);
      }
    }
  });
  proc.stderr!.setEncoding("utf8").on("data", (d: string) => { err = (err + d).slice(-8000); });
  proc.once("error", (e) => { exit = `spawn failed: ${String(e)}`; });
  proc.once("exit", (code, signal) => { exit ??= `exited with ${code ?? signal}`; });
  const exited = new Promise<void>((r) => proc.once("close", () => r()));

  const p: ForeignProcess = {
    name,
    lines,
    stderr: () => err,
    async waitForLine(pred, what, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = lines.find(pred);
        if (found) return found;
        if (exit !== undefined) throw new Error(`${name} ${exit} while waiting for ${what}\n--- ${name} stderr ---\n${err}`);
        if (Date.now() > deadline) throw new Error(`${name}: no ${what} within ${timeoutMs} ms\n--- ${name} stderr ---\n${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    callLines: (callId) => lines.filter((l) => l.callId === callId),
    async [Symbol.asyncDispose]() {
      if (exit === undefined) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5_000);
        await exited;
        clearTimeout(t);
      }
    },
  };
  try {
    await p.waitForLine((l) => l.event === "ready", "ready line");
  } catch (e) {
    await p[Symbol.asyncDispose]();
    throw e;
  }
  return p;
}

/** Runs a foreign program to completion and parses the JSON object on its last stdout line. */
export function runForeignJson<T = Record<string, unknown>>(name: string, cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<T> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    proc.stdout.setEncoding("utf8").on("data", (d: string) => { out += d; });
    proc.stderr.setEncoding("utf8").on("data", (d: string) => { err = (err + d).slice(-8000); });
    const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 60_000);
    proc.once("error", (e) => { clearTimeout(timer); reject(new Error(`${name}: could not start: ${String(e)}`)); });
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code !== 0) {
        reject(new Error(`${name} exited with ${code ?? signal}\n--- stderr ---\n${err}\n--- stdout ---\n${out.slice(-4000)}`));
        return;
      }
      const last = out.trim().split("\n").pop() ?? "";
      try {
        resolve(JSON.parse(last) as T);
      } catch {
        reject(new Error(`${name} printed no JSON report\n--- stdout ---\n${out.slice(-4000)}\n--- stderr ---\n${err}`));
      }
    });
  });
}

/** Runs a command to completion; rejects with its output when it fails. */
export function run(cmd: string, args: string[], opts: { cwd?: string; timeoutMs?: number } = {}): Promise<void> {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd: opts.cwd, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    proc.stdout.setEncoding("utf8").on("data", (d: string) => { out = (out + d).slice(-8000); });
    proc.stderr.setEncoding("utf8").on("data", (d: string) => { out = (out + d).slice(-8000); });
    const timer = setTimeout(() => proc.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
    proc.once("error", (e) => { clearTimeout(timer); reject(new Error(`${cmd}: could not start: ${String(e)}`)); });
    proc.once("close", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} ${args.join(" ")} failed with ${code ?? signal}:\n${out}`));
    });
  });
}
