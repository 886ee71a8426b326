import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
  resolve: { alias: { flowmetal: fileURLToPath(new URL("../node/sdk.ts", import.meta.url)) } },
  root: fileURLToPath(new URL("..", import.meta.url)),
  test: {
    include: ["test/chaos/**/*.test.ts"],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: "forks",
    fileParallelism: false,
  },
});
