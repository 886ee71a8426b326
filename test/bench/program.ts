// test/bench/program.ts — the benchmark's program: the counter of examples/counter.ts, defined inline so the
// compiled bench needs neither tsx nor the package self-reference.
import { assign, setup } from "xstate";
import { defineProgram } from "../../node/program.js";

export const benchCounter = defineProgram({
  name: "counter",
  version: "1",
  description: "counts INC events (benchmark copy of examples/counter.ts)",
  machine: setup({
    types: { context: {} as { n: number }, events: {} as { type: "INC"; by?: number } | { type: "RESET" } },
  }).createMachine({
    id: "counter",
    context: { n: 0 },
    initial: "counting",
    states: {
      counting: {
        on: {
          INC: { actions: assign({ n: ({ context, event }) => context.n + (event.by ?? 1) }) },
          RESET: { actions: assign({ n: 0 }) },
        },
      },
    },
  }),
});
