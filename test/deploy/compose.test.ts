// test/deploy/compose.test.ts — compose.yaml is a valid Compose file with the topology users rely on, the
// Dockerfile builds what the services run, and the NATS users have exactly the permissions their role needs.
//
// test/deploy/compose-spec.json is the Compose Specification's JSON schema (compose-spec/compose-spec,
// Apache-2.0), vendored unmodified from the PyPI package check-jsonschema 0.39.0
// (check_jsonschema/builtin_schemas/vendor/compose-spec.json), so the test needs no network.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { copyFile, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { AckPolicy, jetstream, jetstreamManager, RetentionPolicy } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { Ajv2020 } from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHttpCallbackConnector } from "../../connectors/http-callback/index.js";
import { createHttpRequestConnector } from "../../connectors/http-request/index.js";
import { freePort } from "../support/nats-cluster.js";
import { natsServerBin } from "../support/nats-server.js";
import { argvOf, parseDockerfile, readCompose, serviceEnv, type ComposeFile, type ComposeService } from "../support/netns.js";
import { waitFor } from "../support/wait.js";

const root = fileURLToPath(new URL("../..", import.meta.url));
const composePath = join(root, "compose.yaml");
const NATS = ["nats-1", "nats-2", "nats-3"] as const;
const NODES = ["node-a", "node-b", "node-c"] as const;

// ajv-formats is CommonJS with a default export; under NodeNext its type is the module namespace.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => Ajv2020;

let raw: ComposeFile;
/** As `docker compose` sees it with no FM_* variables set: every default filled in. */
let compose: ComposeFile;

beforeAll(async () => {
  raw = await readCompose(composePath);
  compose = await readCompose(composePath, {});
});

function svc(name: string): ComposeService {
  const s = compose.services[name];
  if (!s) throw new Error(`compose.yaml has no service ${name}`);
  return s;
}

/** The value after `flag` in an argv. */
function flag(argv: string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv[i + 1];
}

/** Bind mounts of a service: container path → repository path (named volumes are left out). */
function binds(s: ComposeService): Map<string, string> {
  const m = new Map<string, string>();
  for (const v of s.volumes ?? []) {
    const [src, dst] = typeof v === "string" ? v.split(":") : [v.source, v.target];
    if (src && dst && (src.startsWith("./") || src.startsWith("/"))) m.set(dst, join(root, src));
  }
  return m;
}

function hostPath(s: ComposeService, containerPath: string): string {
  for (const [dst, src] of binds(s)) if (containerPath.startsWith(`${dst}/`)) return join(src, containerPath.slice(dst.length + 1));
  throw new Error(`${containerPath} is not under a bind mount`);
}

describe("compose.yaml", () => {
  it("is valid against the Compose Specification schema", async () => {
    const schema = JSON.parse(await readFile(join(root, "test/deploy/compose-spec.json"), "utf8")) as Record<string, unknown>;
    const ajv = addFormats(new Ajv2020({ allErrors: true, strict: false }));
    const validate = ajv.compile(schema);
    // docker compose validates the file after interpolation; the raw file must be valid too (it only uses
    // interpolation inside strings).
    for (const doc of [compose, raw]) {
      const ok = validate(doc);
      expect(ok, JSON.stringify(validate.errors, null, 2)).toBe(true);
    }
    // And the schema is the real thing: it rejects what Compose rejects.
    expect(validate({ services: { x: { image: "a", restart: "sometimes", bogus: 1 } } })).toBe(false);
    expect(validate({ services: { x: { depends_on: { y: { condition: "service_happy" } } } } })).toBe(false);
  });

  it("has three clustered NATS servers with JetStream, fsync always, and health checks", async () => {
    const names = Object.keys(compose.services).filter((n) => (svc(n).image ?? "").startsWith("nats:"));
    expect(names.sort()).toEqual([...NATS]);
    for (const name of NATS) {
      const s = svc(name);
      expect(s.image).toMatch(/^nats:2\.15\.2(-alpine)?$/);
      expect(s.hostname).toBe(name);
      expect(s.restart).toMatch(/^(always|unless-stopped|on-failure)/);
      const argv = argvOf(s.command);
      const conf = flag(argv, "--config");
      expect(conf, `${name} --config`).toBeDefined();
      const confPath = hostPath(s, conf!);
      expect(confPath.startsWith(join(root, "cluster/compose/")), confPath).toBe(true);
      const text = await readFile(confPath, "utf8");
      expect(text).toMatch(new RegExp(`^server_name:\\s*${name}\\s*$`, "m"));
      expect(text).toMatch(/jetstream\s*\{[^}]*sync_interval:\s*always/s);
      expect(text).toMatch(/jetstream\s*\{[^}]*store_dir:\s*\$FM_NATS_STORE_DIR/s);
      expect(text).toMatch(/cluster\s*\{[^}]*name:\s*flowmetal/s);
      expect(text).toMatch(/^include \.\/accounts\.conf$/m);
      // The store is on a named volume.
      const env = serviceEnv(s);
      const volume = (s.volumes ?? []).find((v) => typeof v === "string" && !v.startsWith(".") && env.FM_NATS_STORE_DIR!.startsWith(`${v.split(":")[1]}/`));
      expect(volume, `${name}: FM_NATS_STORE_DIR on a named volume`).toBeDefined();
      expect(Object.keys(compose.volumes ?? {})).toContain(String(volume).split(":")[0]);
      // Routes to every server, authenticated with the route password the servers check.
      const routes = (flag(argv, "--routes") ?? "").split(",").map((r) => new URL(r));
      expect(routes.map((r) => `${r.hostname}:${r.port}`).sort()).toEqual(NATS.map((n) => `${n}:6222`));
      for (const r of routes) {
        expect(r.protocol).toBe("nats-route:");
        expect(r.username).toBe("route");
        expect(decodeURIComponent(r.password)).toBe(env.FM_ROUTE_PASSWORD);
      }
      const test = argvOf(s.healthcheck?.test);
      expect(test[0]).toBe("CMD");
      expect(test.join(" ")).toMatch(/http:\/\/127\.0\.0\.1:8222\/healthz\?js-enabled-only=true/);
      expect(text).toMatch(/^http:\s*0\.0\.0\.0:8222$/m);
    }
  });

  it("has server configs that nats-server 2.15 accepts with the environment compose gives them", async () => {
    for (const name of NATS) {
      const s = svc(name);
      const conf = hostPath(s, flag(argvOf(s.command), "--config")!);
      const r = spawnSync(natsServerBin, ["-c", conf, "-t"], { env: { PATH: process.env.PATH, ...serviceEnv(s) }, encoding: "utf8" });
      expect(r.status, `${name}: ${r.stderr}${r.stdout}`).toBe(0);
      // Without the passwords the config is refused, so a deployment cannot start on a missing secret.
      const env = serviceEnv(s);
      delete env.FM_NODE_PASSWORD;
      const bad = spawnSync(natsServerBin, ["-c", conf, "-t"], { env: { PATH: process.env.PATH, ...env }, encoding: "utf8" });
      expect(bad.status).not.toBe(0);
      expect(`${bad.stderr}${bad.stdout}`).toMatch(/FM_NODE_PASSWORD/);
    }
  });

  it("has three Flowmetal nodes with distinct names, --replicas 3, the node user on all servers, health checks", () => {
    const names = Object.keys(compose.services).filter((n) => svc(n).build !== undefined && argvOf(svc(n).command)[0] === "node");
    expect(names.sort()).toEqual([...NODES]);
    const natsEnv = serviceEnv(svc("nats-1"));
    const seen = new Set<string>();
    for (const name of NODES) {
      const s = svc(name);
      expect(s.build).toBe(".");
      expect(s.restart).toMatch(/^(always|unless-stopped|on-failure)/);
      const argv = argvOf(s.command);
      expect(argv[0]).toBe("node");
      expect(flag(argv, "--name")).toBe(name);
      seen.add(flag(argv, "--name")!);
      expect(flag(argv, "--replicas")).toBe("3");
      const modules = argv.filter((a) => a.endsWith(".ts"));
      expect(modules).toEqual(["examples/order.ts", "examples/counter.ts", "examples/reminder.ts"]);
      for (const m of modules) expect(existsSync(join(root, m)), m).toBe(true);
      const urls = flag(argv, "--nats")!.split(",").map((u) => new URL(u));
      expect(urls.map((u) => `${u.protocol}//${u.hostname}:${u.port}`)).toEqual(NATS.map((n) => `nats://${n}:4222`));
      for (const u of urls) {
        expect(u.username).toBe("node");
        expect(decodeURIComponent(u.password)).toBe(natsEnv.FM_NODE_PASSWORD);
      }
      expect(serviceEnv(s).FLOWMETAL_NATS).toBe(flag(argv, "--nats"));
      // Nodes hold only their own password.
      expect(Object.keys(serviceEnv(s)).filter((k) => /PASSWORD/.test(k))).toEqual([]);
      const deps = s.depends_on as Record<string, { condition?: string }>;
      expect(Object.keys(deps).sort()).toEqual([...NATS]);
      for (const d of Object.values(deps)) expect(d.condition).toBe("service_healthy");
      const test = argvOf(s.healthcheck?.test);
      expect(test[0]).toBe("CMD-SHELL");
      expect(test.slice(1).join(" ")).toContain("node dist/node/cli/main.js cluster --json");
      expect(test.slice(1).join(" ")).toContain(`"name": "${name}"`);
    }
    expect(seen.size).toBe(3);
  });

  it("defines the users of every role, each with permissions, and a system account", async () => {
    const text = await readFile(join(root, "cluster/compose/accounts.conf"), "utf8");
    for (const [user, perms] of [["node", "NODE"], ["client", "CLIENT"], ["operator", "OPERATOR"], ["worker", "WORKER"]] as const) {
      expect(text).toMatch(new RegExp(`\\{ user: ${user}, password: \\$FM_${user.toUpperCase()}_PASSWORD, permissions: \\$${perms}_PERMISSIONS \\}`));
      expect(text).toMatch(new RegExp(`^${perms}_PERMISSIONS = \\{`, "m"));
    }
    expect(text).toMatch(/^system_account: SYS$/m);
    expect(text).toMatch(/SYS \{\s*users: \[\s*\{ user: sys, password: \$FM_SYS_PASSWORD \}/);
    expect(text).toMatch(/FLOWMETAL \{\s*jetstream: enabled/);
    // Every password the configs use is one compose passes to the servers.
    const used = new Set([...text.matchAll(/\$(FM_[A-Z_]+)/g)].map((m) => m[1]!));
    for (const v of used) expect(Object.keys(serviceEnv(svc("nats-1")))).toContain(v);
  });

  it("runs the connectors as the worker user, the callback port published on loopback", () => {
    expect(Object.keys(compose.services).sort()).toEqual([...NATS, ...NODES, "http-callback", "http-request"].sort());
    for (const name of ["http-request", "http-callback"]) {
      const argv = argvOf(svc(name).command);
      expect(argv.slice(0, 2)).toEqual(["connector", name]);
      const urls = flag(argv, "--nats")!.split(",");
      expect(urls).toHaveLength(3);
      for (const u of urls) expect(new URL(u).username).toBe("worker");
    }
    expect(svc("http-callback").ports).toEqual(["127.0.0.1:8788:8788"]);
    expect(serviceEnv(svc("http-callback")).FLOWMETAL_CALLBACK_SECRET!.length).toBeGreaterThanOrEqual(32);
  });
});

describe("Dockerfile", () => {
  it("builds with node:20-slim and runs the CLI as a non-root user with dist, node_modules, examples", async () => {
    const stages = parseDockerfile(await readFile(join(root, "Dockerfile"), "utf8"));
    expect(stages.length).toBeGreaterThanOrEqual(2);
    const build = stages[0]!;
    expect(build.from).toBe("node:20-slim");
    const runs = build.instructions.filter((i) => i.op === "RUN").map((i) => i.args).join(" && ");
    expect(runs).toMatch(/npm ci\b/);
    expect(runs).toMatch(/npm run build/);
    // The build stage copies every directory tsconfig.json compiles.
    const tsconfig = JSON.parse(await readFile(join(root, "tsconfig.json"), "utf8")) as { include: string[] };
    const copied = build.instructions.filter((i) => i.op === "COPY").map((i) => i.args.split(/\s+/)[0]!);
    for (const dir of tsconfig.include) expect(copied.some((c) => dir === c || dir.startsWith(`${c}/`)), `build stage copies ${dir}`).toBe(true);
    const runtime = stages.at(-1)!;
    expect(runtime.from).toBe("node:20-slim");
    const user = runtime.instructions.filter((i) => i.op === "USER").at(-1)?.args;
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const entry = runtime.instructions.filter((i) => i.op === "ENTRYPOINT").at(-1)?.args;
    expect(JSON.parse(entry!)).toEqual(["node", "dist/node/cli/main.js"]);
    const dests = runtime.instructions.filter((i) => i.op === "COPY").map((i) => i.args.split(/\s+/).at(-1)!.replace(/^\.\//, ""));
    for (const d of ["package.json", "node_modules", "dist", "examples"]) expect(dests, `runtime stage has ${d}`).toContain(d);
    // tsx loads the .ts modules at run time, so it must survive `npm prune --omit=dev`.
    const pkg = JSON.parse(await readFile(join(root, "package.json"), "utf8")) as { dependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).toContain("tsx");
  });
});

// ---------------------------------------------------------------------------------------------------------
// The permissions, exercised: one nats-server with the compose accounts.conf (copied unchanged) on loopback.


describe("permissions in cluster/compose/accounts.conf", () => {
  let dir: string;
  let server: ChildProcess | undefined;
  let url: string;
  let pw: Record<string, string>;
  const conns: NatsConnection[] = [];

  const as = async (user: string): Promise<NatsConnection> => {
    const nc = await connect({ servers: url, user, pass: pw[user]!, reconnect: false });
    conns.push(nc);
    return nc;
  };
  const denied = async (p: Promise<unknown>): Promise<string> => {
    const err = await p.then(() => undefined, (e: unknown) => e as Error);
    expect(err, "expected a permissions violation").toBeInstanceOf(Error);
    expect(String(err!.message)).toMatch(/permissions violation/i);
    return err!.message;
  };
  const subDenied = async (nc: NatsConnection, subject: string) => {
    const sub = nc.subscribe(subject);
    const closed = await Promise.race([sub.closed.then((e) => e), new Promise((r) => setTimeout(() => r("open"), 2_000))]);
    expect(String((closed as Error)?.message ?? closed)).toMatch(/permissions violation for subscription/i);
  };

  beforeAll(async () => {
    const env = serviceEnv((await readCompose(composePath, {})).services["nats-1"]!);
    pw = {
      node: env.FM_NODE_PASSWORD!,
      client: env.FM_CLIENT_PASSWORD!,
      operator: env.FM_OPERATOR_PASSWORD!,
      worker: env.FM_WORKER_PASSWORD!,
      sys: env.FM_SYS_PASSWORD!,
    };
    dir = await mkdtemp(join(tmpdir(), "fm-perms-"));
    await copyFile(join(root, "cluster/compose/accounts.conf"), join(dir, "accounts.conf"));
    const port = await freePort();
    await writeFile(join(dir, "server.conf"), `listen: 127.0.0.1:${port}\njetstream { store_dir: "${join(dir, "js")}" }\ninclude ./accounts.conf\n`);
    url = `nats://127.0.0.1:${port}`;
    server = spawn(natsServerBin, ["-c", join(dir, "server.conf")], { env: { PATH: process.env.PATH, ...env }, stdio: "ignore" });
    await waitFor(async () => {
      try {
        await (await as("sys")).close();
        return true;
      } catch {
        return false;
      }
    }, { timeoutMs: 10_000, what: "nats-server with accounts.conf" });
  });

  afterAll(async () => {
    for (const nc of conns) await nc.close().catch(() => undefined);
    if (server && server.exitCode === null) {
      const gone = new Promise((r) => server!.once("exit", r));
      server.kill("SIGKILL");
      await gone;
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("node: streams, consumers, KV, journal, effects and the API; never deletes streams", async () => {
    const nc = await as("node");
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    await jsm.streams.add({ name: "FM_IN", subjects: ["fm.in.*.*", "fm.timer.>"], retention: RetentionPolicy.Workqueue });
    await jsm.streams.add({ name: "FM_LOG", subjects: ["fm.log.>"], allow_direct: true });
    await jsm.streams.add({ name: "FM_FX", subjects: ["fm.fx.call.>"], retention: RetentionPolicy.Workqueue });
    await jsm.streams.add({ name: "FM_OUT", subjects: ["fm.out.>"], allow_direct: true });
    await jsm.streams.add({ name: "FM_DEAD", subjects: ["fm.dead.>"] });
    await js.publish("fm.log.order.o-1", "step 1", { msgID: "log.order.o-1.1" });
    await js.publish("fm.out.order.o-1", JSON.stringify({ type: "order.paid" }), { msgID: "order.o-1.1.0" });
    await js.publish("fm.dead.nope.k", "x");
    expect((await jsm.direct.getMessage("FM_LOG", { last_by_subj: "fm.log.order.o-1" }))?.string()).toBe("step 1");
    // A shard consumer, pulled and acked.
    await js.publish("fm.in.order.o-1", JSON.stringify({ type: "PLACE" }));
    await jsm.consumers.add("FM_IN", { durable_name: "shard-0-1", ack_policy: AckPolicy.Explicit, filter_subject: "fm.in.>" });
    const m = await (await js.consumers.get("FM_IN", "shard-0-1")).next({ expires: 2_000 });
    expect(m?.subject).toBe("fm.in.order.o-1");
    expect(await m!.ackAck()).toBe(true);
    await jsm.consumers.delete("FM_IN", "shard-0-1");
    await jsm.streams.purge("FM_IN", { filter: "fm.timer.order.o-1.x" });
    // The cluster's KV buckets, watched.
    const kvm = new Kvm(nc);
    for (const b of ["fm_cluster", "fm_nodes", "fm_shards", "fm_control"]) {
      const kv = await kvm.create(b, { history: 1 });
      await kv.put("k", "v");
      expect((await kv.get("k"))?.string()).toBe("v");
    }
    const w = await (await kvm.open("fm_shards")).watch();
    const first = await (async () => {
      for await (const e of w) return e.key;
    })();
    expect(first).toBe("k");
    w.stop();
    // Nothing else: not other buckets, not deleting streams, not reading inboxes with plain subscriptions.
    await denied(kvm.create("other", { history: 1 }).then((kv) => kv.put("k", "v")));
    await denied(jsm.streams.delete("FM_DEAD"));
    await subDenied(await as("node"), "fm.in.>");
  });

  it("client: sends events, calls the read API, follows fm.state and fm.out; nothing else", async () => {
    const node = await as("node");
    // A node answering the API (allow_responses: it replies to the client's inbox).
    for (const verb of ["ask", "drain"]) node.subscribe(`fm.api.${verb}`, { queue: "fm-api", callback: (_e, m) => void m.respond(`${verb} ok`) });
    await node.flush();
    const nc = await as("client");
    const js = jetstream(nc);
    expect((await js.publish("fm.in.order.o-2", JSON.stringify({ type: "PLACE" }), { msgID: "c-1" })).stream).toBe("FM_IN");
    expect((await nc.request("fm.api.ask", "{}", { timeout: 2_000 })).string()).toBe("ask ok");
    // State notices and emitted events, live and from the stream.
    const state = nc.subscribe("fm.state.order.>", { max: 1 });
    await nc.flush();
    node.publish("fm.state.order.o-2", "{}");
    for await (const m of state) expect(m.subject).toBe("fm.state.order.o-2");
    const out = await (await jetstream(nc).consumers.get("FM_OUT")).next({ expires: 2_000 });
    expect(out?.subject).toBe("fm.out.order.o-1");
    expect((await (await jetstreamManager(nc)).direct.getMessage("FM_OUT", { last_by_subj: "fm.out.order.o-1" }))?.subject).toBe("fm.out.order.o-1");
    // Denied: cluster-changing verbs, the journal, timers, calls, dead letters, KV, stream admin, other reads.
    await denied(nc.request("fm.api.drain", "{}", { timeout: 2_000 }));
    await denied(nc.request("fm.api.move", "{}", { timeout: 2_000 }));
    for (const s of ["fm.log.order.o-2", "fm.timer.order.o-2.t", "fm.fx.call.payments.charge", "fm.dead.order.o-2", "$KV.fm_shards.s.0"]) await denied(js.publish(s, "x"));
    await denied(nc.request("$JS.API.STREAM.CREATE.EVIL", JSON.stringify({ name: "EVIL", subjects: ["fm.in.>"] }), { timeout: 2_000 }));
    await denied(nc.request("$JS.API.DIRECT.GET.FM_LOG", JSON.stringify({ last_by_subj: "fm.log.order.o-1" }), { timeout: 2_000 }));
    await denied(nc.request("$JS.API.CONSUMER.CREATE.FM_IN", JSON.stringify({ stream_name: "FM_IN", config: { ack_policy: "explicit" } }), { timeout: 2_000 }));
    for (const s of ["fm.in.>", "fm.fx.call.>", "fm.api.>", "fm.log.>"]) await subDenied(await as("client"), s);
  });

  it("worker: shares a fn-<function> consumer on FM_FX, acks calls, answers into fm.in, hears cancels", async () => {
    const node = await as("node");
    await jetstream(node).publish("fm.fx.call.deploy.probe", JSON.stringify({ callId: "order.o-3.1.0", replyTo: "fm.in.order.o-3" }), { msgID: "order.o-3.1.0" });
    const nc = await as("worker");
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const cfg = { durable_name: "fn-deploy_probe", filter_subject: "fm.fx.call.deploy.probe", ack_policy: AckPolicy.Explicit, max_deliver: -1, ack_wait: 40_000_000_000 };
    await jsm.consumers.add("FM_FX", cfg);
    await jsm.consumers.add("FM_FX", cfg); // the same configuration again is harmless
    const cancel = nc.subscribe("fm.fx.cancel.deploy.probe", { max: 1 });
    await nc.flush();
    const m = await (await js.consumers.get("FM_FX", "fn-deploy_probe")).next({ expires: 2_000 });
    expect(m?.subject).toBe("fm.fx.call.deploy.probe");
    const ack = await js.publish("fm.in.order.o-3", JSON.stringify({ callId: "order.o-3.1.0", output: 1 }), { msgID: "order.o-3.1.0.result" });
    expect(ack.stream).toBe("FM_IN");
    m!.working();
    expect(await m!.ackAck()).toBe(true);
    node.publish("fm.fx.cancel.deploy.probe", JSON.stringify({ callId: "order.o-3.1.0" }));
    for await (const c of cancel) expect(c.json<{ callId: string }>().callId).toBe("order.o-3.1.0");
    // Denied: publishing calls, the journal, KV, other streams' consumers, the API.
    for (const s of ["fm.fx.call.deploy.probe", "fm.log.order.o-3", "fm.out.order.o-3"]) await denied(js.publish(s, "x"));
    await denied(nc.request("fm.api.get", "{}", { timeout: 2_000 }));
    await denied(nc.request("$JS.API.DIRECT.GET.KV_fm_shards.$KV.fm_shards.k", undefined, { timeout: 2_000 }));
    await denied(jsm.consumers.add("FM_IN", { durable_name: "steal", ack_policy: AckPolicy.Explicit }));
    await denied(jsm.streams.info("FM_LOG"));
    await subDenied(await as("worker"), "fm.fx.call.>");
  });

  it("worker: the real connectors start and answer calls with exactly these permissions", async () => {
    const servers = url.replace("nats://", `nats://worker:${pw.worker}@`);
    await using _req = await createHttpRequestConnector({ servers });
    await using _cb = await createHttpCallbackConnector({ servers, secret: "deploy-test-secret-deploy-test-secret", port: 0 });
    const node = await as("node");
    const call = { callId: "order.o-4.1.0", fn: "http.callback", input: { event: "PAID" }, actor: "order/o-4", replyTo: "fm.in.order.o-4", retry: { maxAttempts: 1, initialBackoffMs: 10, multiplier: 2, maxBackoffMs: 10 }, timeoutMs: 5000 };
    await jetstream(node).publish("fm.fx.call.http.callback", JSON.stringify(call), { msgID: call.callId });
    const jsm = await jetstreamManager(node);
    let result: { callId?: string; output?: { url?: string } } | undefined;
    await waitFor(async () => {
      const m = await jsm.streams.getMessage("FM_IN", { last_by_subj: "fm.in.order.o-4" }).catch(() => null);
      if (!m) return false;
      result = m.json();
      return true;
    }, { timeoutMs: 10_000, what: "the callback connector's result" });
    expect(result).toMatchObject({ callId: "order.o-4.1.0", output: { url: expect.stringContaining("/cb/") } });
  });

  it("operator: the cluster verbs and read-only inspection; no writes", async () => {
    const nc = await as("operator");
    expect((await nc.request("fm.api.drain", "{}", { timeout: 2_000 })).string()).toBe("drain ok");
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info("FM_DEAD")).state.messages).toBe(1);
    expect((await jsm.direct.getMessage("FM_LOG", { last_by_subj: "fm.log.order.o-1" }))?.string()).toBe("step 1");
    await denied(jetstream(nc).publish("fm.log.order.o-1", "forged"));
    await denied(jsm.streams.delete("FM_LOG"));
    await denied(jsm.streams.purge("FM_LOG"));
  });

  it("sys: the system account answers server requests", async () => {
    const nc = await as("sys");
    const r = await nc.request("$SYS.REQ.SERVER.PING.VARZ", undefined, { timeout: 2_000 });
    expect(r.json<{ data?: { jetstream?: unknown } }>().data?.jetstream).toBeDefined();
  });
});
