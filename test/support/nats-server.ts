// test/support/nats-server.ts — real nats-server processes for tests: one per file, on a random port.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait.js";

export interface NatsServer extends AsyncDisposable {
  readonly url: string;
  readonly port: number;
  readonly storeDir: string;
  /** SIGKILL the server (data stays on disk). */
  kill(): Promise<void>;
  /** Start it again on the same port and store. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export const natsServerBin = process.env.FLOWMETAL_NATS_SERVER ?? "nats-server";

async function readPort(portsDir: string, pid: number, deadlineMs: number): Promise<number> {
  let port = 0;
  await waitFor(async () => {
    const files = await readdir(portsDir).catch(() => [] as string[]);
    const f = files.find((n) => n.endsWith(`_${pid}.ports`));
    if (!f) return false;
    const j = JSON.parse(await readFile(join(portsDir, f), "utf8")) as { nats?: string[] };
    const u = j.nats?.[0];
    if (!u) return false;
    port = Number(new URL(u).port);
    return true;
  }, { timeoutMs: deadlineMs, what: "nats-server ports file" });
  return port;
}

function exited(p: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve();
    else p.once("exit", () => resolve());
  });
}

/**
 * Starts a single JetStream-enabled nats-server on a random loopback port with its own store directory.
 * `config` is nats-server configuration text (e.g. `authorization { … }`) for tests that need users.
 */
export async function startNatsServer(options: { config?: string } = {}): Promise<NatsServer> {
  const dir = await mkdtemp(join(tmpdir(), "fm-nats-"));
  const storeDir = join(dir, "store");
  const config = options.config === undefined ? [] : ["-c", join(dir, "server.conf")];
  if (options.config !== undefined) await writeFile(join(dir, "server.conf"), options.config);
  let port = -1;
  let proc: ChildProcess;
  const launch = async () => {
    proc = spawn(natsServerBin, [...config, "-js", "-a", "127.0.0.1", "-p", String(port), "-sd", storeDir, "--ports_file_dir", dir], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let err = "";
    proc.stderr?.on("data", (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
    proc.once("error", (e) => { err += String(e); });
    const pid = proc.pid;
    if (pid === undefined) throw new Error(`could not start ${natsServerBin}: ${err}`);
    try {
      port = await readPort(dir, pid, 10_000);
    } catch (e) {
      throw new Error(`nats-server did not start: ${err}`, { cause: e });
    }
  };
  await launch();
  const stopProc = async (signal: NodeJS.Signals) => {
    const done = exited(proc);
    proc.kill(signal);
    await done;
    for (const f of await readdir(dir)) if (f.endsWith(".ports")) await rm(join(dir, f), { force: true });
  };
  const server: NatsServer = {
    get url() { return `nats://127.0.0.1:${port}`; },
    get port() { return port; },
    storeDir,
    kill: () => stopProc("SIGKILL"),
    restart: async () => {
      await launch();
    },
    stop: async () => {
      await stopProc("SIGTERM");
    },
    async [Symbol.asyncDispose]() {
      if (proc.exitCode === null && proc.signalCode === null) await stopProc("SIGKILL");
      await rm(dir, { recursive: true, force: true });
    },
  };
  return server;
}
