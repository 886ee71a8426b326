// examples/order.ts — an order workflow: payment as a retried function call, a shipping deadline as a durable timer.
import { assign, emit, setup } from "xstate";
import { defineFunction, defineProgram, sendToActor, stepTime, terminalError } from "flowmetal";

interface ChargeInput { orderId: string; amountCents: number }

/**
 * Charges a card. Stands in for a payment provider: it declines amounts over $10,000 (a terminal error:
 * not retried), and fails transiently on the first attempt for amounts ending in 13 cents (retried).
 * Use `callId` as the provider's idempotency key so a retried charge is never taken twice.
 */
export const charge = defineFunction(
  "payments.charge",
  async (input: ChargeInput, { callId, attempt }) => {
    if (input.amountCents > 1_000_000) throw terminalError(`card declined for ${input.amountCents} cents`);
    if (input.amountCents % 100 === 13 && attempt === 1) throw new Error("payment provider timed out");
    return { chargeId: `ch_${callId}`, amountCents: input.amountCents };
  },
  { retry: { maxAttempts: 5, initialBackoffMs: 200, maxBackoffMs: 5_000 }, timeoutMs: 10_000 },
);

interface OrderContext {
  amountCents: number;
  shipWithinMs: number;
  chargeId: string | null;
  placedAt: number;
  problem: string | null;
}

type OrderEvent =
  | { type: "PLACE"; amountCents: number; shipWithinMs?: number }
  | { type: "SHIPPED"; tracking: string }
  | { type: "DELIVERED" }
  | { type: "CANCEL" };

export const order = defineProgram({
  name: "order",
  version: "1",
  description: "place → pay (function call, retried) → ship before a deadline (durable timer) → deliver",
  machine: setup({
    types: { context: {} as OrderContext, events: {} as OrderEvent, input: {} as OrderEvent },
    actors: { charge },
    delays: { shippingDeadline: ({ context }) => context.shipWithinMs },
  }).createMachine({
    id: "order",
    context: { amountCents: 0, shipWithinMs: 2 * 86_400_000, chargeId: null, placedAt: 0, problem: null },
    initial: "new",
    states: {
      new: {
        on: {
          PLACE: {
            target: "awaitingPayment",
            actions: assign({
              amountCents: ({ event }) => event.amountCents,
              shipWithinMs: ({ event, context }) => event.shipWithinMs ?? context.shipWithinMs,
              placedAt: ({ event }) => stepTime(event),
            }),
          },
        },
      },
      awaitingPayment: {
        invoke: {
          id: "charge",
          src: "charge",
          input: ({ context, self }) => ({ orderId: self.id, amountCents: context.amountCents }),
          onDone: { target: "awaitingShipment", actions: assign({ chargeId: ({ event }) => event.output.chargeId }) },
          onError: { target: "paymentFailed", actions: assign({ problem: ({ event }) => String((event.error as { message?: string })?.message ?? event.error) }) },
        },
        on: { CANCEL: "cancelled" },
      },
      awaitingShipment: {
        entry: emit({ type: "order.paid" }),
        after: {
          shippingDeadline: {
            target: "late",
            actions: [emit({ type: "order.late" }), sendToActor("alerts/ops", ({ context }) => ({ type: "LATE_ORDER", placedAt: context.placedAt }))],
          },
        },
        on: { SHIPPED: "shipped", CANCEL: "cancelled" },
      },
      late: { on: { SHIPPED: "shipped", CANCEL: "cancelled" } },
      shipped: { on: { DELIVERED: "delivered" } },
      delivered: { type: "final" },
      paymentFailed: { type: "final" },
      cancelled: { type: "final", entry: emit({ type: "order.cancelled" }) },
    },
  }),
});

/** Collects alerts sent by other programs (here: late orders). */
export const alerts = defineProgram({
  name: "alerts",
  version: "1",
  description: "an inbox of operational alerts",
  machine: setup({ types: { context: {} as { late: number }, events: {} as { type: "LATE_ORDER"; placedAt: number } } }).createMachine({
    id: "alerts",
    context: { late: 0 },
    on: { LATE_ORDER: { actions: assign({ late: ({ context }) => context.late + 1 }) } },
  }),
});
