// examples/counter.ts — the smallest durable program: a counter that survives anything.
import { assign, setup } from "xstate";
import { defineProgram } from "flowmetal";

export const counter = defineProgram({
  name: "counter",
  version: "1",
  description: "counts INC and DEC events; RESET sets it back to zero",
  machine: setup({
    types: { context: {} as { n: number }, events: {} as { type: "INC"; by?: number } | { type: "DEC" } | { type: "RESET" } },
  }).createMachine({
    id: "counter",
    context: { n: 0 },
    initial: "counting",
    states: {
      counting: {
        on: {
          INC: { actions: assign({ n: ({ context, event }) => context.n + (event.by ?? 1) }) },
          DEC: { actions: assign({ n: ({ context }) => context.n - 1 }) },
          RESET: { actions: assign({ n: 0 }) },
        },
      },
    },
  }),
});
