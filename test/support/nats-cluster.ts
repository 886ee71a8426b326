// test/support/nats-cluster.ts — a real 3-server JetStream cluster on loopback, with per-server kill/restart.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { natsServerBin } from "./nats-server.js";
import { waitFor } from "./wait.js";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export interface ClusterServer {
  readonly name: string;
  readonly url: string;
  readonly alive: boolean;
  kill(signal?: NodeJS.Signals): Promise<void>;
  start(): Promise<void>;
}

export interface NatsCluster extends AsyncDisposable {
  readonly servers: ClusterServer[];
  /** All client URLs, comma-separated (what `--nats` takes). */
  readonly url: string;
  readonly urls: string[];
  /** Waits until a client can use JetStream (a meta leader exists). */
  ready(): Promise<void>;
}

/** Starts `size` clustered nats-servers with JetStream, `sync_interval: always`, on random loopback ports. */
export async function startNatsCluster(size = 3): Promise<NatsCluster> {
  const dir = await mkdtemp(join(tmpdir(), "fm-natsc-"));
  const ports = await Promise.all(Array.from({ length: size }, async () => ({ client: await freePort(), route: await freePort() })));
  const routes = ports.map((p) => `nats-route://127.0.0.1:${p.route}`);
  const servers: ClusterServer[] = ports.map((p, i) => {
    const name = `n${i + 1}`;
    const conf = join(dir, `${name}.conf`);
    let proc: ChildProcess | undefined;
    let alive = false;
    const server: ClusterServer = {
      name,
      url: `nats://127.0.0.1:${p.client}`,
      get alive() {
        return alive;
      },
      async start() {
        await writeFile(
          conf,
          [
            `server_name: ${name}`,
            `listen: 127.0.0.1:${p.client}`,
            `jetstream { store_dir: "${join(dir, name)}", sync_interval: always }`,
            `cluster { name: fm-test, listen: 127.0.0.1:${p.route}, routes: [${routes.filter((_, j) => j !== i).join(", ")}] }`,
          ].join("\n"),
        );
        proc = spawn(natsServerBin, ["-c", conf], { stdio: ["ignore", "ignore", "ignore"] });
        alive = true;
        proc.once("exit", () => (alive = false));
        await waitFor(async () => {
          try {
            const nc = await connect({ servers: server.url, reconnect: false, timeout: 500 });
            await nc.close();
            return true;
          } catch {
            return false;
          }
        }, { timeoutMs: 15_000, what: `nats-server ${name}` });
      },
      async kill(signal: NodeJS.Signals = "SIGKILL") {
        if (!proc || !alive) return;
        const done = new Promise<void>((r) => proc!.once("exit", () => r()));
        proc.kill(signal);
        await done;
      },
    };
    return server;
  });
  await Promise.all(servers.map((s) => s.start()));
  const urls = servers.map((s) => s.url);
  const cluster: NatsCluster = {
    servers,
    urls,
    url: urls.join(","),
    async ready() {
      await waitFor(async () => {
        const nc = await connect({ servers: urls, timeout: 1000 });
        try {
          const r = await nc.request("$JS.API.INFO", undefined, { timeout: 1000 });
          const j = JSON.parse(new TextDecoder().decode(r.data)) as { error?: unknown };
          return !j.error;
        } catch {
          return false;
        } finally {
          await nc.close();
        }
      }, { timeoutMs: 30_000, what: "JetStream meta leader" });
    },
    async [Symbol.asyncDispose]() {
      await Promise.all(servers.map((s) => s.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
  await cluster.ready();
  return cluster;
}
