// node/connector-refs.ts — ready-made references to the connectors' functions, for programs to invoke.
import type { HttpRequestInput, HttpResponse } from "../protocol/records.js";
import { functionRef } from "./program.js";

export type { HttpRequestInput, HttpResponse };

/**
 * Calls an HTTP API through the HTTP request connector: `invoke: { src: "httpRequest", input: { url } }` with
 * `setup({ actors: { httpRequest } })`. Retried on network errors, 408, 429 and 5xx (honouring Retry-After);
 * other 4xx are terminal. The call id is sent as `Idempotency-Key`.
 */
export const httpRequest = functionRef<HttpRequestInput, HttpResponse>("http.request", {
  retry: { maxAttempts: 5, initialBackoffMs: 500, maxBackoffMs: 30_000 },
  timeoutMs: 30_000,
});

/** Input of `http.callback`. */
export interface HttpCallbackInput {
  /** The event type a POST to the URL becomes. */
  event: string;
  /** How long the URL stays valid. @default the connector's (7 days) */
  expiresInMs?: number;
  /** Your id for this callback. @default the call id */
  id?: string;
}

/** Output of `http.callback`. */
export interface HttpCallbackOutput {
  /** Give this URL to the provider; a POST to it is delivered as `{ type: event, callbackId, body, contentType }`. */
  url: string;
  callbackId: string;
  expiresAt: number;
}

/** Mints a callback URL bound to the calling actor, through the HTTP callback connector. */
export const httpCallback = functionRef<HttpCallbackInput, HttpCallbackOutput>("http.callback", {
  retry: { maxAttempts: 5, initialBackoffMs: 200 },
  timeoutMs: 10_000,
});
