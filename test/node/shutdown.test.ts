// test/node/shutdown.test.ts — a `flowmetal node` process stops on SIGTERM: gracefully with NATS up, within its
// shutdown deadline when NATS is gone (a drain that cannot finish must not keep the process alive).
import { describe, expect, it } from "vitest";
import { createClient } from "../../node/client/index.js";
import { startNatsServer } from "../support/nats-server.js";
import { spawnNode } from "../support/node-process.js";

const fixture = "test/fixtures/programs.ts";

describe("node shutdown", () => {
  it("drains and exits 0 on SIGTERM", async () => {
    await using nats = await startNatsServer();
    const node = await spawnNode(nats.url, [fixture], { name: "stop-ok" });
    await using fm = await createClient({ servers: nats.url });
    await fm.ask("counter/s1", { type: "INC" });
    expect(await node.kill("SIGTERM")).toEqual({ code: 0, signal: null });
  });

  it("exits within FLOWMETAL_SHUTDOWN_TIMEOUT_MS on SIGTERM when NATS is gone, and at once on a second signal", async () => {
    for (const second of [false, true]) {
      await using nats = await startNatsServer();
      const node = await spawnNode(nats.url, [fixture], { name: `stop-stuck-${second}`, env: { FLOWMETAL_SHUTDOWN_TIMEOUT_MS: second ? "60000" : "1500" } });
      {
        await using fm = await createClient({ servers: nats.url });
        await fm.ask("counter/s2", { type: "INC" });
      }
      await nats.kill();
      const exit = node.kill("SIGTERM");
      if (second) {
        await new Promise((r) => setTimeout(r, 500));
        void node.kill("SIGINT");
      }
      expect(await exit).toEqual({ code: 1, signal: null });
      expect(node.stderr()).toMatch(second ? /shutdown cut short \(second signal\)/ : /shutdown cut short \(still draining after 1500 ms/);
    }
  });
});
