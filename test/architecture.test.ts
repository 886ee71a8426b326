import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { allErrorCodes } from "../protocol/errors.js";

const root = join(import.meta.dirname, "..");

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(root, dir))) {
    const p = join(dir, name);
    if (statSync(join(root, p)).isDirectory()) out.push(...sources(p));
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"([^"]+)"/g)].map((m) => m[1]!);
}

function resolvesInto(file: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined;
  const target = relative(root, join(root, file, "..", spec));
  return target.split("/")[0];
}

describe("architecture", () => {
  it("keeps the dependency direction cluster → node → protocol ← connectors", () => {
    const allowed: Record<string, string[]> = {
      protocol: ["protocol"],
      node: ["node", "protocol"],
      connectors: ["connectors", "protocol"],
      cluster: ["cluster", "node", "protocol"],
    };
    const bad: string[] = [];
    for (const [folder, ok] of Object.entries(allowed)) {
      let files: string[] = [];
      try {
        files = sources(folder);
      } catch {
        continue;
      }
      for (const f of files) {
        // The CLI is the composition root: it wires every layer together, and nothing imports it.
        if (f.startsWith("node/cli/")) continue;
        for (const spec of imports(f)) {
          const into = resolvesInto(f, spec);
          if (into && !ok.includes(into)) bad.push(`${f} imports ${spec}`);
          if (spec.includes("/cli/")) bad.push(`${f} imports the CLI (${spec})`);
        }
      }
    }
    expect(bad).toEqual([]);
  });

  it("keeps protocol/ free of dependencies other than the codec and the NATS client", () => {
    const external = sources("protocol").flatMap((f) => imports(f).filter((s) => !s.startsWith(".") && !s.startsWith("node:")));
    expect([...new Set(external)].sort()).toEqual(["@nats-io/jetstream", "@nats-io/transport-node", "cbor-x"]);
  });

  it("keeps the client free of server code", () => {
    const visit = (file: string, seen: Set<string>) => {
      if (seen.has(file)) return;
      seen.add(file);
      for (const spec of imports(file)) {
        if (spec.startsWith(".")) visit(relative(root, join(root, file, "..", spec.replace(/\.js$/, ".ts"))), seen);
      }
    };
    const seen = new Set<string>();
    visit("node/client/index.ts", seen);
    expect([...seen].filter((f) => !f.startsWith("protocol/") && !f.startsWith("node/client/"))).toEqual([]);
  });

  it("lists exactly the catalogued error codes in PROTOCOL.md", () => {
    const doc = readFileSync(join(root, "PROTOCOL.md"), "utf8");
    const table = doc.slice(doc.indexOf("## 11. Errors"), doc.indexOf("## 12."));
    const documented = [...table.matchAll(/^\| `(FM_ERR_[A-Z_]+)`/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual([...allErrorCodes].sort());
  });

  it("has no console calls, default exports or enums in library code", () => {
    const offenders = ["protocol", "node"].flatMap(sources).filter((f) => !f.startsWith("node/cli/")).filter((f) => {
      const t = readFileSync(join(root, f), "utf8");
      return /\bconsole\.|export default|\benum\s+\w+|as any\b/.test(t);
    });
    expect(offenders).toEqual([]);
  });
});
