// examples/reminder.ts — a reminder that sleeps for days: the wait is a durable timer, not a process.
import { assign, emit, setup } from "xstate";
import { defineProgram } from "flowmetal";

type ReminderEvent =
  | { type: "SET"; text: string; inMs?: number }
  | { type: "SNOOZE"; forMs?: number }
  | { type: "DONE" };

export const reminder = defineProgram({
  name: "reminder",
  version: "1",
  description: "SET a reminder (default: in 3 days); it fires even if every process restarts meanwhile; SNOOZE or DONE",
  machine: setup({
    types: { context: {} as { text: string; waitMs: number; fired: number }, events: {} as ReminderEvent },
    delays: { wait: ({ context }) => context.waitMs },
  }).createMachine({
    id: "reminder",
    context: { text: "", waitMs: 3 * 86_400_000, fired: 0 },
    initial: "idle",
    states: {
      idle: {
        on: { SET: { target: "sleeping", actions: assign({ text: ({ event }) => event.text, waitMs: ({ event }) => event.inMs ?? 3 * 86_400_000 }) } },
      },
      sleeping: {
        after: { wait: { target: "due", actions: [assign({ fired: ({ context }) => context.fired + 1 }), emit(({ context }) => ({ type: "reminder.due", text: context.text }))] } },
        on: { DONE: "done" },
      },
      due: {
        on: {
          SNOOZE: { target: "sleeping", actions: assign({ waitMs: ({ event }) => event.forMs ?? 3_600_000 }) },
          DONE: "done",
        },
      },
      done: { type: "final" },
    },
  }),
});
