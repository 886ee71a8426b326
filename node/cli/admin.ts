// node/cli/admin.ts — CLI wiring of what lets people see inside: metrics, the index projector, the admin server and UI; `ls` and `stats`.
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../../protocol/connect.js";
import { createSubjects } from "../../protocol/subjects.js";
import { createAdminServer, type AdminServer } from "../admin/server.js";
import type { Client } from "../client/index.js";
import { lazyIndexView, type IndexView, type IndexViewSource } from "../index-projector/view.js";
import { startProjector, type Projector } from "../index-projector/projector.js";
import { loadModules } from "../loader.js";
import type { Logger } from "../logger.js";
import { countPendingTimers, createPromMetrics, type PromMetrics } from "../metrics.js";
import type { FlowmetalNode } from "../node.js";

/** Metrics, the index projector and the admin server of one CLI process. */
export interface Observability {
  /** Spread into the node's options: `metrics` and the shared actor index. */
  readonly nodeOptions: { metrics: PromMetrics["metrics"]; index: IndexViewSource };
  /** Starts the projector and, when `http` is given, the admin server; returns the server's URL, if any. */
  start(args: { node: FlowmetalNode; modules: string[]; http?: { port: number; host?: string | undefined } | undefined }): Promise<string | undefined>;
  drain(): Promise<void>;
}

/** Admin tokens from the environment (entry points read it, libraries do not). */
function tokensFromEnv(): { read?: string; admin?: string } {
  return {
    ...(process.env.FLOWMETAL_READ_TOKEN ? { read: process.env.FLOWMETAL_READ_TOKEN } : {}),
    ...(process.env.FLOWMETAL_ADMIN_TOKEN ? { admin: process.env.FLOWMETAL_ADMIN_TOKEN } : {}),
  };
}

/**
 * Connects once for the projector, the index and the admin server, and makes the Prometheus metrics.
 * `replicas` is that of the index bucket when this process creates it (as for the streams).
 */
export async function prepareObservability(url: string, prefix: string | undefined, log: Logger, replicas?: number): Promise<Observability> {
  const nc: NatsConnection = await connectNats(url, { name: "flowmetal-admin", reconnectForever: true });
  const prom = createPromMetrics();
  const index = lazyIndexView({ nc, ...(prefix ? { prefix } : {}), ...(replicas ? { replicas } : {}), log });
  let view: IndexView | undefined;
  let projector: Projector | undefined;
  let admin: AdminServer | undefined;
  let timers: { at: number; n: Promise<number> } | undefined;
  return {
    nodeOptions: { metrics: prom.metrics, index },
    async start({ node, modules, http }) {
      const subjects = createSubjects(prefix);
      const jsm = await jetstreamManager(nc);
      // FLOWMETAL_INDEX=off: this node runs no projector (others keep the index; with none, it goes stale).
      if (process.env.FLOWMETAL_INDEX !== "off") {
        projector = await startProjector({ nc, ...(prefix ? { prefix } : {}), ...(replicas ? { replicas } : {}), log, onBatch: (r, w, ms) => prom.indexBatch(r, w, ms) });
      }
      void index.get().then((v) => (view = v), () => undefined);
      prom.addSources({
        activeActors: () => node.activeActors(),
        indexLag: async () => (await (await index.get()).lag()).records,
        indexedActors: () => view?.programs() ?? [],
        timersPending: () => {
          // A scrape every few seconds at most: the count lists timer subjects.
          if (!timers || Date.now() - timers.at > 5_000) timers = { at: Date.now(), n: countPendingTimers(jsm, subjects) };
          return timers.n;
        },
      });
      if (!http) return undefined;
      const loaded = await loadModules(modules);
      admin = await createAdminServer({
        nc,
        node,
        programs: loaded.programs,
        ...(prefix ? { prefix } : {}),
        port: http.port,
        ...(http.host ? { host: http.host } : {}),
        tokens: tokensFromEnv(),
        registry: prom.registry,
        index,
        log,
      });
      return admin.url;
    },
    async drain() {
      await admin?.drain();
      await projector?.drain();
      await index.close();
      await nc.drain().catch(() => undefined);
    },
  };
}

function out(s: string): void {
  process.stdout.write(`${s}\n`);
}

function valueText(v: unknown): string {
  return typeof v === "string" ? v : JSON.stringify(v);
}

/** `flowmetal ls <program> [--state X] [--status Y] [--after KEY] [--limit N] [--json]` */
export async function lsCommand(fm: Client, program: string, o: { state?: string | undefined; status?: string | undefined; after?: string | undefined; limit?: number | undefined; json?: boolean | undefined }): Promise<void> {
  const page = await fm.list(program, {
    ...(o.state ? { state: o.state } : {}),
    ...(o.status ? { status: o.status } : {}),
    ...(o.after ? { after: o.after } : {}),
    ...(o.limit ? { limit: o.limit } : {}),
  });
  if (o.json) return out(JSON.stringify(page, null, 2));
  const width = Math.max(8, ...page.actors.map((a) => a.actor.length));
  for (const a of page.actors) {
    out(`${a.actor.padEnd(width)}  ${valueText(a.value).padEnd(24)} ${a.status.padEnd(7)} step ${String(a.step).padStart(5)}  ${new Date(a.updated).toISOString()}`);
  }
  out(`${page.actors.length} of ${page.total} actor(s)${page.next ? `; more: flowmetal ls ${program}${o.state ? ` --state ${o.state}` : ""}${o.status ? ` --status ${o.status}` : ""} --after ${page.next}` : ""}`);
}

/** `flowmetal stats <program> [--json]` */
export async function statsCommand(fm: Client, program: string, json: boolean | undefined): Promise<void> {
  const st = await fm.stats(program);
  if (json) return out(JSON.stringify(st, null, 2));
  const statuses = Object.entries(st.statuses).map(([k, n]) => `${k} ${n}`).join(", ");
  out(`${program}: ${st.total} actor(s)${statuses ? ` (${statuses})` : ""}; index lag ${st.lag.records} record(s)${st.lag.running ? "" : " (no projector has run yet)"}`);
  const rows = Object.entries(st.states).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const width = Math.max(5, ...rows.map(([p]) => p.length + 2 * (p.split(".").length - 1)));
  for (const [path, n] of rows) {
    const depth = path.split(".").length - 1;
    out(`  ${`${"  ".repeat(depth)}${path.split(".").pop() ?? path}`.padEnd(width)}  ${String(n).padStart(8)}`);
  }
}
