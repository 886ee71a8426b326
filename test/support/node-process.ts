// test/support/node-process.ts — a real `flowmetal node` child process (built CLI), to be killed with SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));
const cli = fileURLToPath(new URL("../../dist/node/cli/main.js", import.meta.url));

export interface NodeProcessOptions {
  /** Node name (recorded in every step it writes). */
  name: string;
  /** `FLOWMETAL_FAILPOINTS`, e.g. "before-append=0.05"; unset when absent. */
  failpoints?: string;
  /** Extra environment (e.g. FLOWMETAL_SINK). */
  env?: Record<string, string>;
  /** How long to wait for the "ready" line. @default 20000 */
  readyTimeoutMs?: number;
}

export interface NodeExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface NodeProcess extends AsyncDisposable {
  readonly name: string;
  readonly pid: number;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<NodeExit>;
  /** True until the process has exited. */
  readonly alive: boolean;
  /** Sends a signal (SIGKILL by default) and waits for the exit. */
  kill(signal?: NodeJS.Signals): Promise<NodeExit>;
  /** The last few kB of stderr, for failure messages. */
  stderr(): string;
}

function exitOf(p: ChildProcess): Promise<NodeExit> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve({ code: p.exitCode, signal: p.signalCode });
    else p.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

/**
 * Spawns `node dist/node/cli/main.js node --nats <url> --name <name> <modules…>` and resolves once it
 * prints its ready line. Rejects (and kills the child) if it exits or stays silent first. Needs
 * `npm run build` to have run: program modules import "flowmetal", which resolves to dist.
 */
export async function spawnNode(natsUrl: string, modules: readonly string[], options: NodeProcessOptions): Promise<NodeProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, FLOWMETAL_LOG_LEVEL: "warn", ...options.env };
  delete env.FLOWMETAL_FAILPOINTS;
  if (options.failpoints) env.FLOWMETAL_FAILPOINTS = options.failpoints;
  const child = spawn(process.execPath, [cli, "node", "--nats", natsUrl, "--name", options.name, ...modules], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  let out = "";
  child.stderr?.on("data", (d: Buffer) => { err = (err + d.toString()).slice(-8000); });
  const exited = exitOf(child);
  let alive = true;
  void exited.then(() => { alive = false; });

  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${options.name} printed no ready line within ${options.readyTimeoutMs ?? 20_000} ms; stderr: ${err}`)), options.readyTimeoutMs ?? 20_000);
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (/flowmetal node \S+ ready/.test(out)) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited.then((x) => {
      clearTimeout(timer);
      reject(new Error(`node ${options.name} exited before it was ready (code ${x.code}, signal ${x.signal}); stderr: ${err}`));
    });
  });
  // Keep reading stdout so the pipe never fills.
  child.stdout?.on("data", () => undefined);

  const kill = async (signal: NodeJS.Signals = "SIGKILL") => {
    if (alive) child.kill(signal);
    return exited;
  };
  try {
    await ready;
  } catch (e) {
    await kill();
    throw e;
  }
  return {
    name: options.name,
    pid: child.pid ?? -1,
    exited,
    get alive() {
      return alive;
    },
    kill,
    stderr: () => err,
    async [Symbol.asyncDispose]() {
      await kill("SIGKILL");
    },
  };
}
