// node/dev-server.ts — the private nats-server that `flowmetal dev` runs: found on PATH, version-checked, data under .flowmetal/.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { ErrorCode, FlowmetalError } from "../protocol/errors.js";

/** The oldest nats-server Flowmetal runs on: message schedules (2.12) and a compare-and-set that holds on replicated streams. */
export const minNatsServer = [2, 12, 0] as const;

const install = "install one with: go install github.com/nats-io/nats-server/v2@v2.15.2 (then put ~/go/bin on PATH), or set FLOWMETAL_NATS_SERVER to its path";

/** Parses `nats-server: v2.15.2` into [2, 15, 2]. */
export function parseServerVersion(text: string): [number, number, number] | undefined {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function atLeast(v: readonly number[], min: readonly number[]): boolean {
  for (let i = 0; i < min.length; i++) {
    if ((v[i] ?? 0) !== min[i]) return (v[i] ?? 0) > (min[i] ?? 0);
  }
  return true;
}

/** Checks the server binary; throws `FM_ERR_SERVER_VERSION` with install instructions when missing or too old. */
export async function checkNatsServer(bin: string): Promise<string> {
  let out: string;
  try {
    out = (await promisify(execFile)(bin, ["--version"], { timeout: 10_000 })).stdout;
  } catch (err) {
    throw new FlowmetalError(ErrorCode.ServerVersion, `nats-server not found (tried '${bin}'): ${install}`, { cause: err });
  }
  const v = parseServerVersion(out);
  if (!v || !atLeast(v, minNatsServer)) {
    throw new FlowmetalError(ErrorCode.ServerVersion, `'${bin}' is ${out.trim() || "of unknown version"}; Flowmetal needs nats-server ${minNatsServer.join(".")} or newer: ${install}`);
  }
  return v.join(".");
}

export interface DevServer extends AsyncDisposable {
  readonly url: string;
  readonly version: string;
  stop(): Promise<void>;
}

/** Starts a JetStream nats-server on loopback with its store in `<dataDir>/nats`. */
export async function startDevServer(options: { bin?: string; dataDir: string; port?: number }): Promise<DevServer> {
  const bin = options.bin ?? "nats-server";
  const version = await checkNatsServer(bin);
  const storeDir = join(options.dataDir, "nats");
  const portsDir = join(options.dataDir, "run");
  await mkdir(storeDir, { recursive: true });
  await rm(portsDir, { recursive: true, force: true });
  await mkdir(portsDir, { recursive: true });
  const args = ["-js", "-a", "127.0.0.1", "-p", String(options.port ?? 4222), "-sd", storeDir, "--ports_file_dir", portsDir, "-n", "flowmetal-dev"];
  const proc: ChildProcess = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  proc.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const deadline = Date.now() + 15_000;
  let url: string | undefined;
  while (!url) {
    if (proc.exitCode !== null) {
      throw new FlowmetalError(ErrorCode.Unavailable, `nats-server exited at start (is port ${options.port ?? 4222} in use? try --port): ${stderr.trim().split("\n").slice(-3).join(" | ")}`);
    }
    if (Date.now() > deadline) throw new FlowmetalError(ErrorCode.Unavailable, `nats-server did not start within 15 s: ${stderr}`);
    try {
      const j = JSON.parse(await readFile(join(portsDir, `${bin.split("/").pop()}_${proc.pid}.ports`), "utf8")) as { nats?: string[] };
      url = j.nats?.[0];
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(t);
  })());
  return { url, version, stop, [Symbol.asyncDispose]: stop };
}
