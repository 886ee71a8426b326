// test/admin/programs.ts — programs for the admin, index and UI tests: a flat counter and a shipment with nested, parallel and history states.
import { assign, setup } from "xstate";
import { defineProgram } from "flowmetal";

/** Nested, parallel, history and final states, for the statechart-as-data route and the drawing. */
export const shipment = defineProgram({
  name: "shipment",
  version: "2",
  description: "packing → in transit (tracking ∥ billing) → delivered",
  machine: setup({
    types: { context: {} as { stops: number }, events: {} as { type: "PACKED" } | { type: "STOP" } | { type: "GO" } | { type: "PAY" } | { type: "DELIVER" } | { type: "RESUME" } },
    guards: { paid: () => true },
  }).createMachine({
    id: "shipment",
    context: { stops: 0 },
    initial: "packing",
    states: {
      packing: { on: { PACKED: "inTransit" } },
      inTransit: {
        type: "parallel",
        on: { DELIVER: { target: "delivered", guard: "paid" } },
        states: {
          tracking: {
            initial: "moving",
            states: {
              moving: { on: { STOP: { target: "held", actions: assign({ stops: ({ context }) => context.stops + 1 }) } } },
              held: { on: { GO: "moving" }, after: { 60_000: "moving" } },
              resume: { type: "history" },
            },
          },
          billing: { initial: "unpaid", states: { unpaid: { on: { PAY: "paid" } }, paid: { type: "final" } } },
        },
      },
      delivered: { type: "final" },
    },
  }),
});

/** A flat program for fleet queries: TICK moves between two states, FINISH ends it. */
export const ticker = defineProgram({
  name: "ticker",
  version: "1",
  machine: setup({ types: { context: {} as { n: number }, events: {} as { type: "TICK" } | { type: "FINISH" } } }).createMachine({
    id: "ticker",
    context: { n: 0 },
    initial: "even",
    states: {
      even: { on: { TICK: { target: "odd", actions: assign({ n: ({ context }) => context.n + 1 }) }, FINISH: "finished" } },
      odd: { on: { TICK: { target: "even", actions: assign({ n: ({ context }) => context.n + 1 }) }, FINISH: "finished" } },
      finished: { type: "final" },
    },
  }),
});
