// test/support/node-process.ts — a real `flowmetal node` child process (built CLI), to be killed with SIGKILL.
import { spawn, type ChildProcess } from "node:child_process";
import { appendFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

// Run from source (vitest) or compiled into dist/test/support (the benchmark): find the project root either way.
const compiled = import.meta.url.includes("/dist/test/support/");
const root = fileURLToPath(new URL(compiled ? "../../.." : "../..", import.meta.url));
const cli = fileURLToPath(new URL("dist/node/cli/main.js", `file://${root.endsWith("/") ? root : `${root}/`}`));

export interface NodeProcessOptions {
  /** Node name (recorded in every step it writes). */
  name: string;
  /** `FLOWMETAL_FAILPOINTS`, e.g. "before-append=0.05"; unset when absent. */
  failpoints?: string;
  /** Extra environment (e.g. FLOWMETAL_SINK). */
  env?: Record<string, string>;
  /**
   * `--heartbeat-ttl`: a node killed with SIGKILL keeps its shards until its heartbeat expires, so this is
   * how long a restarted node waits before it takes them over. Every node of a cluster must agree.
   */
  heartbeatTtlMs?: number;
  /** Append the node's stderr (its warn/error log) to this file as well. */
  logFile?: string;
  /** How long to wait for the "ready" line. @default 20000 */
  readyTimeoutMs?: number;
  /** Extra CLI arguments for `flowmetal node`, before the modules (e.g. `["--replicas", "3"]`). */
  args?: readonly string[];
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
 * Spawns `node dist/node/cli/main.js node --nats <url> --name <name> <modules…>` (a cluster node) and resolves once it
 * prints its ready line. Rejects (and kills the child) if it exits or stays silent first. Needs
 * `npm run build` to have run: program modules import "flowmetal", which resolves to dist.
 */
export async function spawnNode(natsUrl: string, modules: readonly string[], options: NodeProcessOptions): Promise<NodeProcess> {
  const env: NodeJS.ProcessEnv = { ...process.env, FLOWMETAL_LOG_LEVEL: "warn", ...options.env };
  delete env.FLOWMETAL_FAILPOINTS;
  if (options.failpoints) env.FLOWMETAL_FAILPOINTS = options.failpoints;
  const ttl = options.heartbeatTtlMs !== undefined ? ["--heartbeat-ttl", String(options.heartbeatTtlMs)] : [];
  const child = spawn(process.execPath, [cli, "node", "--nats", natsUrl, "--name", options.name, ...ttl, ...(options.args ?? []), ...modules], {
    cwd: root,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let err = "";
  let out = "";
  child.stderr?.on("data", (d: Buffer) => {
    err = (err + d.toString()).slice(-8000);
    if (options.logFile) appendFileSync(options.logFile, d);
  });
  child.once("error", (e) => { err += String(e); });
  const exited = exitOf(child);
  let alive = true;
  void exited.then(() => { alive = false; });

  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${options.name} printed no ready line within ${options.readyTimeoutMs ?? 20_000} ms; stderr: ${err}`)), options.readyTimeoutMs ?? 20_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      if (/flowmetal node \S+ ready/.test(out)) {
        clearTimeout(timer);
        child.stdout?.off("data", onData);
        resolve();
      }
    };
    child.stdout?.on("data", onData);
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

export interface SupervisorOptions extends Omit<NodeProcessOptions, "name"> {
  /** Node names are `<name>-1`, `<name>-2`, … one per incarnation. */
  name: string;
}

/** A node that dies for a reason other than SIGKILL: a runtime bug, never expected. */
export interface UnexpectedExit {
  name: string;
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
}

export interface Supervisor extends AsyncDisposable {
  /** Incarnations that died of SIGKILL without the test asking (failpoints). */
  readonly crashes: number;
  /** Incarnations the test killed with {@link Supervisor.killCurrent} (not counting the kill of {@link Supervisor.stop}). */
  readonly kills: number;
  /** Incarnations started so far. */
  readonly started: number;
  readonly unexpectedExits: readonly UnexpectedExit[];
  /** The running incarnation, if one is up. */
  readonly current: NodeProcess | undefined;
  /** SIGKILLs the running incarnation from outside (if one is up); the supervisor starts the next. */
  killCurrent(): Promise<void>;
  /** Stops restarting and SIGKILLs the running incarnation. */
  stop(): Promise<void>;
}

/**
 * Keeps one node running: whenever it dies (failpoints SIGKILL it) a new incarnation is started. An
 * incarnation that exits any other way is recorded in `unexpectedExits` and restarted too.
 */
export function superviseNode(natsUrl: string, modules: readonly string[], options: SupervisorOptions): Supervisor {
  let stopped = false;
  let current: NodeProcess | undefined;
  let starting: Promise<NodeProcess> | undefined;
  let crashes = 0;
  let kills = 0;
  let started = 0;
  const killedByUs = new Set<number>();
  const unexpected: UnexpectedExit[] = [];

  const record = (name: string, exit: NodeExit, stderr: string, pid: number) => {
    if (stopped) return; // the supervisor's own kill
    if (exit.signal === "SIGKILL") {
      if (killedByUs.has(pid)) kills++;
      else crashes++;
    } else if (!stopped) {
      unexpected.push({ name, ...exit, stderr });
    }
  };

  const loop = (async () => {
    while (!stopped) {
      const name = `${options.name}-${++started}`;
      starting = spawnNode(natsUrl, modules, { ...options, name });
      try {
        current = await starting;
      } catch (err) {
        // Died while starting up: with failpoints armed a step can kill it before it prints "ready".
        const msg = String((err as Error).message);
        if (stopped) break;
        if (/signal SIGKILL/.test(msg)) crashes++;
        else unexpected.push({ name, code: null, signal: null, stderr: msg });
        if (!/signal SIGKILL/.test(msg)) await new Promise((r) => setTimeout(r, 200));
        continue;
      } finally {
        starting = undefined;
      }
      const node = current;
      const exit = await node.exited;
      current = undefined;
      record(node.name, exit, node.stderr(), node.pid);
    }
  })();

  const stop = async () => {
    stopped = true;
    const s = starting;
    if (s) await s.then((n) => n.kill(), () => undefined);
    if (current) {
      killedByUs.add(current.pid);
      await current.kill();
    }
    await loop;
  };

  return {
    get crashes() {
      return crashes;
    },
    get kills() {
      return kills;
    },
    get started() {
      return started;
    },
    get unexpectedExits() {
      return unexpected;
    },
    get current() {
      return current;
    },
    async killCurrent() {
      const n = current;
      if (!n) return;
      killedByUs.add(n.pid);
      await n.kill();
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
