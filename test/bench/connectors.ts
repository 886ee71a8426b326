// test/bench/connectors.ts — round trips through connectors: a program invoking a no-op function, and an HTTP callback POST → next state.
import { spawn, spawnSync } from "node:child_process";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { jetstream } from "@nats-io/jetstream";
import { connect, headers } from "@nats-io/transport-node";
import { assign, setup } from "xstate";
import { createHttpCallbackConnector } from "../../connectors/http-callback/index.js";
import { httpCallback } from "../../node/connector-refs.js";
import { createNode } from "../../node/node.js";
import { defineFunction, defineProgram, functionRef } from "../../node/program.js";
import type { StateNotice } from "../../protocol/records.js";
import { startNatsServer } from "../support/nats-server.js";
import { fmt, percentile, round, table } from "./util.js";

const quick = process.argv.includes("--quick");
const N = quick ? 100 : 500;

const noop = defineFunction("bench.noop", async (input: unknown) => input, { retry: { maxAttempts: 1 }, timeoutMs: 5000 });
/** Served by the Go program of test/interop/go (written only against PROTOCOL.md). */
const goSum = functionRef("interop.go.sum", { retry: { maxAttempts: 1 }, timeoutMs: 5000 });

/** GO → calls the no-op function → back to idle; CB → mints a callback URL and waits for the POST. */
const roundtrip = defineProgram({
  name: "roundtrip",
  version: "1",
  machine: setup({ actors: { noop, goSum, httpCallback } }).createMachine({
    id: "roundtrip",
    initial: "idle",
    context: { url: "" },
    states: {
      idle: { on: { GO: "calling", GOGO: "callingGo", CB: "minting" } },
      calling: { invoke: { src: "noop", input: {}, onDone: "idle" } },
      callingGo: { invoke: { src: "goSum", input: { numbers: [1, 2], mode: "ok" }, onDone: "idle" } },
      minting: { invoke: { src: "httpCallback", input: { event: "HOOK" }, onDone: { target: "waiting", actions: assign({ url: ({ event }) => event.output.url }) } } },
      waiting: { on: { HOOK: "idle" } },
    },
  }),
});

async function main(): Promise<void> {
  await using nats = await startNatsServer();
  const node = await createNode({ servers: nats.url, modules: [roundtrip, noop], shards: 4 });
  const cb = await createHttpCallbackConnector({ servers: nats.url, secret: "bench-secret-bench-secret-bench-secret", port: 0 });
  const nc = await connect({ servers: nats.url, noAsyncTraces: true });
  const js = jetstream(nc);
  const h = headers();
  h.set("Content-Type", "application/json");

  /** Resolves with the next notice of `actor` whose state is `value`. */
  const nextState = (actor: string, value: string) =>
    new Promise<StateNotice>((resolve) => {
      const sub = nc.subscribe(`fm.state.roundtrip.${actor}`, {
        callback: (_err, m) => {
          const n = m.json<StateNotice>();
          if (n.value === value) {
            sub.unsubscribe();
            resolve(n);
          }
        },
      });
    });

  /** Round trips of actor `key`: `event` in → call published → a worker runs it → result into the inbox → step back to idle. 20 warm-up ones are not counted. */
  const functionRoundTrips = async (key: string, event: string): Promise<number[]> => {
    const times: number[] = [];
    for (let i = 0; i < N + 20; i++) {
      const back = nextState(key, "idle");
      const t0 = performance.now();
      await js.publish(`fm.in.roundtrip.${key}`, event, { headers: h });
      await back;
      if (i >= 20) times.push(performance.now() - t0);
    }
    return times;
  };

  // Function: the no-op function, run by the node's in-process TS worker.
  const fn = await functionRoundTrips("f", '{"type":"GO"}');

  // The same round trip through a Go worker process (when Go is installed), built from test/interop/go.
  let goFn: number[] = [];
  let goNote = "go not installed";
  if (spawnSync("go", ["version"]).status === 0) {
    const bin = join(await mkdtemp(join(tmpdir(), "fm-bench-go-")), "interop-go");
    const built = spawnSync("go", ["build", "-buildvcs=false", "-o", bin, "."], { cwd: "test/interop/go", stdio: "inherit" });
    if (built.status === 0) {
      const worker = spawn(bin, ["worker", nats.url], { stdio: ["ignore", "ignore", "inherit"] });
      try {
        goFn = await functionRoundTrips("g", '{"type":"GOGO"}');
        goNote = "Go worker (nats.go) in its own process";
      } finally {
        worker.kill("SIGKILL");
      }
    } else goNote = "go build failed";
  }

  // Callback: POST to the minted URL → persisted → 202 → the actor's next state.
  const hook: number[] = [];
  for (let i = 0; i < N + 20; i++) {
    const waiting = nextState("c", "waiting");
    await js.publish("fm.in.roundtrip.c", '{"type":"CB"}', { headers: h });
    const url = ((await waiting).context as { url: string }).url;
    const back = nextState("c", "idle");
    const t0 = performance.now();
    const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: '{"ok":true}' });
    if (res.status !== 202) throw new Error(`callback answered ${res.status}`);
    await back;
    if (i >= 20) hook.push(performance.now() - t0);
  }

  fn.sort((a, b) => a - b);
  goFn.sort((a, b) => a - b);
  hook.sort((a, b) => a - b);
  const results = {
    date: new Date().toISOString(),
    quick,
    function: { roundTrips: fn.length, p50Ms: round(percentile(fn, 50), 2), p99Ms: round(percentile(fn, 99), 2), worker: "in-process TS worker" },
    goFunction: goFn.length ? { roundTrips: goFn.length, p50Ms: round(percentile(goFn, 50), 2), p99Ms: round(percentile(goFn, 99), 2), worker: goNote } : { skipped: goNote },
    callback: { roundTrips: hook.length, p50Ms: round(percentile(hook, 50), 2), p99Ms: round(percentile(hook, 99), 2) },
  };
  table("Connectors: round trips, one actor at a time (one nats-server)", [
    ["", "p50", "p99"],
    ["event → no-op function (TS worker, in the node) → result step", `${fmt(results.function.p50Ms, 2)} ms`, `${fmt(results.function.p99Ms, 2)} ms`],
    goFn.length
      ? ["event → function in a Go worker process → result step", `${fmt(percentile(goFn, 50), 2)} ms`, `${fmt(percentile(goFn, 99), 2)} ms`]
      : ["Go worker", goNote, ""],
    ["HTTP callback POST → actor's next state", `${fmt(results.callback.p50Ms, 2)} ms`, `${fmt(results.callback.p99Ms, 2)} ms`],
  ]);
  const out = process.env.BENCH_OUT ?? (quick ? "/tmp/flowmetal-bench-connectors-quick.json" : "test/bench/results/connectors.json");
  await mkdir(out.split("/").slice(0, -1).join("/") || ".", { recursive: true });
  await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
  process.stdout.write(`Wrote ${out}\n`);
  await cb.close();
  await node.close();
  await nc.close();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench failed: ${String((err as Error)?.stack ?? err)}\n`);
    process.exit(1);
  },
);
