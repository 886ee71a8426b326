// test/support/netns.ts — a small multi-host lab on one machine: one network namespace per "host" on a private
// bridge, an /etc/hosts per namespace so compose's service names resolve, and the readers of compose.yaml and
// the Dockerfile that let a test run the same command lines as `docker compose up`.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { promisify } from "node:util";
import { parse as parseYaml } from "yaml";

const execFileP = promisify(execFile);

async function ip(args: readonly string[]): Promise<string> {
  const { stdout } = await execFileP("ip", args as string[], { timeout: 10_000 });
  return stdout;
}

/** Why namespaces cannot be used here, or undefined when they can (Linux, root, a working `ip netns`). */
export async function netnsUnavailable(probeName = "fmprobe"): Promise<string | undefined> {
  if (process.platform !== "linux") return `network namespaces need Linux (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return "network namespaces need root (`ip netns add` fails otherwise)";
  try {
    await ip(["netns", "list"]);
  } catch (err) {
    return `\`ip netns\` is not available: ${(err as Error).message}`;
  }
  try {
    await ip(["netns", "add", probeName]);
    await ip(["netns", "del", probeName]);
  } catch (err) {
    await ip(["netns", "del", probeName]).catch(() => undefined);
    return `cannot create a network namespace: ${(err as Error).message}`;
  }
  return undefined;
}

export interface LabOptions {
  /**
   * Names the lab's namespaces `<prefix>-<id>-<host>` (id: 4 hex digits, one per lab) and its owner file
   * `/run/<prefix>-labs/<id>`; links are `fm<id>…`. Labs of concurrent test runs do not touch each other.
   */
  prefix: string;
  /** The first three octets of the lab's private /24, e.g. "10.231.47". Hosts get .11, .12, … */
  subnet: string;
  /** Host names, as compose services are named; each resolves to its address in every namespace. */
  hosts: readonly string[];
}

export interface LabHost {
  readonly name: string;
  readonly ns: string;
  readonly ip: string;
}

export interface LabExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LabProcess {
  readonly host: string;
  readonly label: string;
  readonly pid: number;
  readonly alive: boolean;
  /** Resolves when the process has exited (never rejects). */
  readonly exited: Promise<LabExit>;
  stdout(): string;
  /** stderr (the last 4 MB of it). */
  stderr(): string;
  /** Resolves once stdout matches; rejects if the process exits or the time runs out first. */
  waitForStdout(re: RegExp, timeoutMs: number): Promise<void>;
  kill(signal?: NodeJS.Signals): Promise<LabExit>;
}

export interface SpawnOptions {
  cwd?: string;
  /** The whole environment of the process, besides PATH and HOME (nothing else leaks in from the test). */
  env?: Record<string, string>;
  /** For messages; defaults to argv[0]. */
  label?: string;
}

export interface Lab {
  readonly hosts: Readonly<Record<string, LabHost>>;
  /** Starts `argv` inside the host's namespace (`ip netns exec`, which execs: the pid is the program's). */
  spawn(host: string, argv: readonly string[], options?: SpawnOptions): LabProcess;
  /** Runs `argv` in the host's namespace to completion (killed after timeoutMs). */
  run(host: string, argv: readonly string[], options?: SpawnOptions & { timeoutMs?: number }): Promise<LabExit & { stdout: string; stderr: string }>;
  /** Kills every process in the lab's namespaces, then removes namespaces, links and hosts files. Idempotent. */
  destroy(): Promise<void>;
}

function exitOf(p: ChildProcess): Promise<LabExit> {
  return new Promise((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) resolve({ code: p.exitCode, signal: p.signalCode });
    else p.once("exit", (code, signal) => resolve({ code, signal }));
  });
}

function killPid(pid: number): void {
  try {
    process.kill(pid, "SIGKILL");
  } catch {
    // already gone
  }
}

const ownerDir = (prefix: string) => `/run/${prefix}-labs`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes one lab: kills its processes (found by namespace, killed by pid), then namespaces, hosts files, links. */
async function removeLab(prefix: string, id: string): Promise<void> {
  const names = (await ip(["netns", "list"]).catch(() => ""))
    .split("\n")
    .map((l) => l.trim().split(/\s+/)[0] ?? "")
    .filter((n) => n.startsWith(`${prefix}-${id}-`));
  for (const ns of names) {
    const pids = (await ip(["netns", "pids", ns]).catch(() => "")).split(/\s+/).filter(Boolean).map(Number);
    for (const pid of pids) killPid(pid);
  }
  for (const ns of names) {
    await ip(["netns", "del", ns]).catch(() => undefined);
    await rm(`/etc/netns/${ns}`, { recursive: true, force: true });
  }
  const links = (await ip(["-o", "link", "show"]).catch(() => ""))
    .split("\n")
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((n): n is string => !!n && n.startsWith(`fm${id}`));
  for (const l of links) await ip(["link", "del", l]).catch(() => undefined);
  await rm(`${ownerDir(prefix)}/${id}`, { force: true });
}

/**
 * Removes what earlier runs with this prefix left behind when they crashed: every lab whose owner process
 * is gone. Labs of runs still going (another test run on this machine) are left alone.
 */
export async function cleanupLab(prefix: string): Promise<void> {
  const ids = new Set<string>();
  for (const l of (await ip(["netns", "list"]).catch(() => "")).split("\n")) {
    const m = new RegExp(`^${prefix}-([0-9a-f]{4})-`).exec(l.trim());
    if (m) ids.add(m[1]!);
  }
  for (const f of await readdir(ownerDir(prefix)).catch(() => [] as string[])) if (/^[0-9a-f]{4}$/.test(f)) ids.add(f);
  for (const id of ids) {
    const owner = Number(await readFile(`${ownerDir(prefix)}/${id}`, "utf8").catch(() => "0"));
    if (owner > 0 && owner !== process.pid && alive(owner)) continue;
    await removeLab(prefix, id);
  }
}

/**
 * Builds the lab: a bridge `fm<id>br` in the root namespace (with no address: the root namespace takes no
 * part), and per host a namespace with `lo` and an `eth0` on the bridge at `<subnet>.<11+i>/24`. There is no
 * default route, so nothing in the lab can reach anything outside the /24.
 */
export async function createLab(options: LabOptions): Promise<Lab> {
  const { prefix, subnet, hosts: names } = options;
  if (!/^[a-z]{2,8}$/.test(prefix)) throw new Error(`lab prefix must be 2-8 lowercase letters, got '${prefix}'`);
  if (!/^10\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`lab subnet must be a 10.x.y prefix, got '${subnet}'`);
  await cleanupLab(prefix);
  let id: string;
  do id = randomBytes(2).toString("hex");
  while ((await ip(["-o", "link", "show"]).catch(() => "")).includes(`fm${id}`));
  await mkdir(ownerDir(prefix), { recursive: true });
  await writeFile(`${ownerDir(prefix)}/${id}`, String(process.pid));
  const bridge = `fm${id}br`;
  const hosts: Record<string, LabHost> = {};
  names.forEach((name, i) => {
    hosts[name] = { name, ns: `${prefix}-${id}-${name}`, ip: `${subnet}.${11 + i}` };
  });
  const procs = new Set<{ child: ChildProcess; exited: Promise<LabExit> }>();
  let destroyed = false;

  const destroy = async () => {
    if (destroyed) return;
    destroyed = true;
    for (const p of procs) if (p.child.pid !== undefined && p.child.exitCode === null && p.child.signalCode === null) killPid(p.child.pid);
    await Promise.race([Promise.all([...procs].map((p) => p.exited)), new Promise((r) => setTimeout(r, 5_000))]);
    await removeLab(prefix, id);
  };

  try {
    await ip(["link", "add", bridge, "type", "bridge"]);
    await ip(["link", "set", bridge, "up"]);
    const hostsFile = ["127.0.0.1 localhost", ...Object.values(hosts).map((h) => `${h.ip} ${h.name}`), ""].join("\n");
    let i = 0;
    for (const h of Object.values(hosts)) {
      const outside = `fm${id}${i}h`;
      const inside = `fm${id}${i}n`;
      i++;
      await ip(["netns", "add", h.ns]);
      await ip(["link", "add", outside, "type", "veth", "peer", "name", inside]);
      await ip(["link", "set", inside, "netns", h.ns]);
      await ip(["link", "set", outside, "master", bridge]);
      await ip(["link", "set", outside, "up"]);
      await ip(["-n", h.ns, "link", "set", inside, "name", "eth0"]);
      await ip(["-n", h.ns, "addr", "add", `${h.ip}/24`, "dev", "eth0"]);
      await ip(["-n", h.ns, "link", "set", "eth0", "up"]);
      await ip(["-n", h.ns, "link", "set", "lo", "up"]);
      // `ip netns exec` bind-mounts /etc/netns/<ns>/hosts over /etc/hosts for the program it runs.
      await mkdir(`/etc/netns/${h.ns}`, { recursive: true });
      await writeFile(`/etc/netns/${h.ns}/hosts`, hostsFile);
    }
  } catch (err) {
    await destroy();
    throw err;
  }

  const spawnIn = (host: string, argv: readonly string[], o: SpawnOptions = {}): LabProcess => {
    const h = hosts[host];
    if (!h) throw new Error(`no host '${host}' in the lab`);
    if (destroyed) throw new Error("the lab is destroyed");
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: process.env.HOME ?? "/root", ...o.env };
    const child = spawn("ip", ["netns", "exec", h.ns, ...argv], { cwd: o.cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    const exited = exitOf(child);
    const entry = { child, exited };
    procs.add(entry);
    let out = "";
    let err = "";
    let alive = true;
    void exited.then(() => (alive = false));
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.length > 256_000) out = out.slice(-128_000);
    });
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
      if (err.length > 4_000_000) err = err.slice(-2_000_000);
    });
    const label = o.label ?? argv[0] ?? "?";
    return {
      host,
      label,
      pid: child.pid ?? -1,
      get alive() {
        return alive;
      },
      exited,
      stdout: () => out,
      stderr: () => err,
      waitForStdout(re, timeoutMs) {
        return new Promise<void>((resolve, reject) => {
          const done = (f: () => void) => {
            clearTimeout(timer);
            child.stdout?.off("data", check);
            f();
          };
          const check = () => {
            if (re.test(out)) done(resolve);
          };
          const timer = setTimeout(() => done(() => reject(new Error(`${label} on ${host}: no ${re} on stdout within ${timeoutMs} ms; stderr: ${err.slice(-4000)}`))), timeoutMs);
          child.stdout?.on("data", check);
          void exited.then((x) => done(() => reject(new Error(`${label} on ${host} exited (code ${x.code}, signal ${x.signal}) before ${re}; stderr: ${err.slice(-4000)}`))));
          check();
        });
      },
      async kill(signal: NodeJS.Signals = "SIGKILL") {
        if (alive && child.pid !== undefined) {
          try {
            process.kill(child.pid, signal);
          } catch {
            // already gone
          }
        }
        return exited;
      },
    };
  };

  return {
    hosts,
    spawn: spawnIn,
    async run(host, argv, o = {}) {
      const p = spawnIn(host, argv, o);
      const timer = setTimeout(() => void p.kill(), o.timeoutMs ?? 30_000);
      const x = await p.exited;
      clearTimeout(timer);
      return { ...x, stdout: p.stdout(), stderr: p.stderr() };
    },
    destroy,
  };
}

// ---------------------------------------------------------------------------------------------------------
// compose.yaml and the Dockerfile, read the way docker compose and docker build read them.

export type ComposeFile = {
  name?: string;
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  [k: string]: unknown;
};

export interface ComposeService {
  image?: string;
  build?: string | { context?: string; dockerfile?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | number | boolean | null> | string[];
  volumes?: (string | { type: string; source?: string; target: string })[];
  healthcheck?: { test?: string[] | string; [k: string]: unknown };
  depends_on?: Record<string, { condition?: string }> | string[];
  hostname?: string;
  [k: string]: unknown;
}

/**
 * Compose's interpolation of one value: `$$` is a literal `$`; `$VAR`, `${VAR}`, `${VAR:-default}` (unset or
 * empty) and `${VAR-default}` (unset). Other forms are refused rather than read wrongly.
 */
export function interpolate(value: string, env: Readonly<Record<string, string | undefined>>): string {
  return value.replace(/\$(\$|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))/g, (all, _x: string, braced: string | undefined, bare: string | undefined) => {
    if (all === "$$") return "$";
    if (bare !== undefined) return env[bare] ?? "";
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?$/s.exec(braced ?? "");
    if (!m) throw new Error(`unsupported interpolation '${all}' in '${value}'`);
    const [, name, op, def] = m as unknown as [string, string, string | undefined, string | undefined];
    const v = env[name];
    if (op === ":-") return v === undefined || v === "" ? (def ?? "") : v;
    if (op === "-") return v === undefined ? (def ?? "") : v;
    return v ?? "";
  });
}

function interpolateDeep(v: unknown, env: Readonly<Record<string, string | undefined>>): unknown {
  if (typeof v === "string") return interpolate(v, env);
  if (Array.isArray(v)) return v.map((x) => interpolateDeep(x, env));
  if (v && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, interpolateDeep(x, env)]));
  return v;
}

/** Parses a compose file (YAML merge keys resolved); with `env`, interpolates every value as compose does. */
export async function readCompose(file: string, env?: Readonly<Record<string, string | undefined>>): Promise<ComposeFile> {
  const doc = parseYaml(await readFile(file, "utf8"), { merge: true }) as ComposeFile;
  return env ? (interpolateDeep(doc, env) as ComposeFile) : doc;
}

/** A service's environment as a map (compose allows a map or a list of KEY=VALUE). */
export function serviceEnv(s: ComposeService): Record<string, string> {
  const e = s.environment ?? {};
  if (Array.isArray(e)) {
    return Object.fromEntries(e.map((kv) => {
      const i = kv.indexOf("=");
      return i < 0 ? [kv, ""] : [kv.slice(0, i), kv.slice(i + 1)];
    }));
  }
  return Object.fromEntries(Object.entries(e).map(([k, v]) => [k, v === null ? "" : String(v)]));
}

/** `cmd` as an argv (compose's string form is split on whitespace, which is all this repository uses). */
export function argvOf(cmd: string[] | string | undefined): string[] {
  if (cmd === undefined) return [];
  return Array.isArray(cmd) ? cmd.map(String) : cmd.trim().split(/\s+/);
}

export interface DockerInstruction {
  op: string;
  /** The text after the instruction, continuation lines joined. */
  args: string;
}

export interface DockerStage {
  from: string;
  name?: string;
  instructions: DockerInstruction[];
}

/** Splits a Dockerfile into stages and instructions (comments dropped, `\` continuations joined). */
export function parseDockerfile(text: string): DockerStage[] {
  const lines: string[] = [];
  let cur = "";
  for (const raw of text.split("\n")) {
    const line = raw.trimEnd();
    if (!cur && /^\s*#/.test(line)) continue;
    if (line.endsWith("\\")) {
      cur += `${line.slice(0, -1)} `;
      continue;
    }
    cur += line;
    if (cur.trim()) lines.push(cur.trim());
    cur = "";
  }
  const stages: DockerStage[] = [];
  for (const l of lines) {
    const m = /^(\S+)\s*(.*)$/s.exec(l);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const args = m[2] ?? "";
    if (op === "FROM") {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?/i.exec(args);
      stages.push({ from: f?.[1] ?? args, ...(f?.[2] ? { name: f[2] } : {}), instructions: [] });
      continue;
    }
    const st = stages.at(-1);
    if (!st) throw new Error(`Dockerfile: ${op} before FROM`);
    st.instructions.push({ op, args });
  }
  return stages;
}
