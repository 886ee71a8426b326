// test/support/faulty-connection.ts — a real NATS connection with faults injected into chosen requests and publishes.
import type { NatsConnection } from "@nats-io/transport-node";

export interface Faults {
  /** Called for each request: an error fails it at once (as a timeout would), `undefined` lets it through. */
  request?(subject: string): Error | undefined;
  /** Called for each publish: returns the payload to send instead, or `undefined` to send it unchanged. */
  publish?(subject: string, data: Uint8Array): Uint8Array | string | undefined;
}

/**
 * `nc` with `faults` applied; everything else goes to the server as usual. For faults a test must place
 * exactly (one pull, one kind of request), which killing a server or cutting a link cannot.
 */
export function withFaults(nc: NatsConnection, faults: Faults): NatsConnection {
  return new Proxy(nc, {
    get(target, prop) {
      if (prop === "request" && faults.request) {
        return (subject: string, ...rest: unknown[]) => {
          const err = faults.request!(subject);
          return err ? Promise.reject(err) : (target.request as (...a: unknown[]) => unknown).call(target, subject, ...rest);
        };
      }
      if (prop === "publish" && faults.publish) {
        return (subject: string, data?: Uint8Array | string, ...rest: unknown[]) => {
          const bytes = typeof data === "string" ? new TextEncoder().encode(data) : (data ?? new Uint8Array());
          const instead = faults.publish!(subject, bytes);
          return (target.publish as (...a: unknown[]) => unknown).call(target, subject, instead ?? data, ...rest);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/**
 * A pull request made invalid (a heartbeat as long as its expiry), which the server answers with 400:
 * nats.js then stops that consume for good.
 */
export function spoilPull(data: Uint8Array): string {
  const pull = JSON.parse(new TextDecoder().decode(data)) as { expires: number };
  return JSON.stringify({ ...pull, idle_heartbeat: pull.expires });
}
