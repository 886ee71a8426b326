// node/publisher.ts — acknowledged JetStream publishes on the step path, without a request object per publish.
import type { PubAck } from "@nats-io/jetstream";
import { createInbox, type MsgHdrs, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";

/** The subset of nats.js's publish options the step path uses (so a `JetStreamClient` is a `Publisher` too). */
export interface PublishOptions {
  msgID?: string;
  expect?: { lastSubjectSequence?: number };
  headers?: MsgHdrs;
  /** How long to wait for the PubAck. @default 10000 */
  timeout?: number;
}

/** Publishes to a stream and resolves with JetStream's acknowledgement (what `JetStreamClient.publish` does). */
export interface Publisher {
  publish(subject: string, data: Uint8Array, options?: PublishOptions): Promise<Pick<PubAck, "stream" | "seq" | "duplicate">>;
}

/**
 * Headers as the NATS header block (`NATS/1.0` and CRLF lines), encoded once, without a `MsgHdrs` map:
 * for the step path, which sends a block per journal append and per state notice. A publish only calls
 * `encode()` on its headers (not part of nats.js's typed interface, so test/node/publisher.test.ts checks
 * that headers sent this way take effect). Only for publishing: nothing else of `MsgHdrs` is there.
 */
export function wireHeaders(fields: readonly (readonly [string, string])[]): MsgHdrs {
  let text = "NATS/1.0\r\n";
  for (const [name, value] of fields) {
    if (/[\r\n]/.test(name + value)) throw lineBreakIn(name, value);
    text += `${name}: ${value}\r\n`;
  }
  return headerBlock(text);
}
const encoder = new TextEncoder();

/** The block of `NATS/1.0` and header lines in `text`, ended, as a publish takes it. */
function headerBlock(text: string): MsgHdrs {
  const bytes = encoder.encode(`${text}\r\n`);
  return { encode: () => bytes } as unknown as MsgHdrs;
}

function lineBreakIn(name: string, value: string): Error {
  return new Error(`a header cannot contain CR or LF: ${JSON.stringify(`${name}: ${value}`)}`);
}

/** `Nats-Msg-Id` and `Nats-Expected-Last-Subject-Sequence` of a journal append. */
function jetStreamHeaders(msgId: string | undefined, lastSubjectSequence: number | undefined): MsgHdrs {
  // Built as one string (one per journal append): wireHeaders' list of fields and regex showed in profiles.
  let text = "NATS/1.0\r\n";
  if (msgId !== undefined) {
    if (msgId.includes("\r") || msgId.includes("\n")) throw lineBreakIn("Nats-Msg-Id", msgId);
    text += `Nats-Msg-Id: ${msgId}\r\n`;
  }
  if (lastSubjectSequence !== undefined) text += `Nats-Expected-Last-Subject-Sequence: ${Math.trunc(lastSubjectSequence)}\r\n`;
  return headerBlock(text);
}

interface Waiting {
  resolve: (ack: Pick<PubAck, "stream" | "seq" | "duplicate">) => void;
  reject: (err: Error) => void;
  deadline: number;
  subject: string;
}

/**
 * A publisher for the hot path of a node: every publish carries a reply subject under one inbox wildcard
 * this process subscribes to once, and waits in a map until its PubAck arrives.
 *
 * Why not `js.publish`: nats.js builds a request per call with its own timer, deferred and a `RequestError`
 * (an Error, so a captured stack trace) created even when the request succeeds; profiles of a node taking
 * steps showed that at about a tenth of its CPU. The protocol is the same — a publish with a reply subject,
 * answered by the stream with `{ stream, seq, duplicate? }` or `{ error: { code, err_code, description } }`,
 * or by the server with a 503 status when nothing listens (JetStream down) — so the errors keep the messages
 * the callers match on ("wrong last sequence", "no responders", "timeout").
 */
export class AckedPublisher implements Publisher {
  private readonly prefix: string;
  private readonly waiting = new Map<string, Waiting>();
  private readonly sub: Subscription;
  private readonly sweeper: NodeJS.Timeout;
  private next = 0;
  private closed = false;

  constructor(private readonly nc: NatsConnection) {
    this.prefix = `${createInbox()}.`;
    this.sub = nc.subscribe(`${this.prefix}*`, { callback: (err, m) => (err ? this.failAll(err) : this.answer(m)) });
    // Timeouts are checked a few times a second instead of with one timer per publish.
    this.sweeper = setInterval(() => this.expire(), 100);
    this.sweeper.unref();
  }

  publish(subject: string, data: Uint8Array, options: PublishOptions = {}): Promise<Pick<PubAck, "stream" | "seq" | "duplicate">> {
    if (this.closed) return Promise.reject(new Error("publisher closed"));
    let h = options.headers;
    if (h) {
      if (options.msgID !== undefined) h.set("Nats-Msg-Id", options.msgID);
      if (options.expect?.lastSubjectSequence !== undefined) h.set("Nats-Expected-Last-Subject-Sequence", String(options.expect.lastSubjectSequence));
    } else if (options.msgID !== undefined || options.expect?.lastSubjectSequence !== undefined) {
      // Only these two: written straight in the wire form (all nats.js asks of headers here is encode()).
      try {
        h = jetStreamHeaders(options.msgID, options.expect?.lastSubjectSequence);
      } catch (err) {
        return Promise.reject(err as Error);
      }
    }
    const token = (this.next++).toString(36);
    return new Promise((resolve, reject) => {
      this.waiting.set(token, { resolve, reject, deadline: performance.now() + (options.timeout ?? 10_000), subject });
      try {
        this.nc.publish(subject, data, { reply: this.prefix + token, ...(h ? { headers: h } : {}) });
      } catch (err) {
        this.waiting.delete(token);
        reject(err as Error);
      }
    });
  }

  private answer(m: Msg): void {
    const token = m.subject.slice(this.prefix.length);
    const w = this.waiting.get(token);
    if (!w) return; // timed out already
    this.waiting.delete(token);
    if (m.headers?.hasError) {
      // A status message from the server: 503 when no stream (or no JetStream) listens on the subject.
      w.reject(new Error(m.headers.code === 503 ? `no responders: nothing stores ${w.subject} (JetStream unavailable?)` : `${m.headers.code} ${m.headers.description}`));
      return;
    }
    let reply: { stream?: string; seq?: number; duplicate?: boolean; error?: { code?: number; err_code?: number; description?: string } };
    try {
      reply = m.json();
    } catch (err) {
      w.reject(new Error(`unreadable PubAck for ${w.subject}: ${(err as Error).message}`));
      return;
    }
    if (reply.error) {
      const e = new Error(reply.error.description ?? `JetStream error ${reply.error.err_code ?? reply.error.code}`) as Error & { code?: number; errCode?: number };
      e.code = reply.error.code;
      e.errCode = reply.error.err_code;
      w.reject(e);
      return;
    }
    w.resolve({ stream: reply.stream ?? "", seq: reply.seq ?? 0, duplicate: reply.duplicate === true });
  }

  private expire(): void {
    const now = performance.now();
    for (const [token, w] of this.waiting) {
      if (w.deadline <= now) {
        this.waiting.delete(token);
        w.reject(new Error(`timeout: no PubAck for ${w.subject}`));
      }
    }
  }

  private failAll(err: Error): void {
    for (const w of this.waiting.values()) w.reject(err);
    this.waiting.clear();
  }

  /** Stops listening; publishes still waiting fail. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweeper);
    this.sub.unsubscribe();
    this.failAll(new Error("publisher closed"));
  }
}
