// node/admin/live.ts — live updates for the UI as server-sent events: an actor's steps, or (throttled) changes in the index.
import type { ServerResponse } from "node:http";
import type { NatsConnection } from "@nats-io/transport-node";
import type { ActorAddress, Subjects } from "../../protocol/subjects.js";
import type { IndexView } from "../index-projector/view.js";

/** Index changes are sent at most this often: a busy program changes thousands of times a second. */
const indexTickMs = 300;
const pingMs = 15_000;

export interface LiveStream {
  /** Ends the stream. */
  close(): void;
}

function open(res: ServerResponse): (event: string, data: unknown) => void {
  res.writeHead(200, {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    Connection: "keep-alive",
    "X-Accel-Buffering": "no",
  });
  res.write(": live\n\n");
  return (event, data) => {
    res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  };
}

/** Streams every state notice of one actor as `event: step` (the notice of PROTOCOL.md §6). */
export function streamActor(res: ServerResponse, nc: NatsConnection, subjects: Subjects, a: ActorAddress): LiveStream {
  const send = open(res);
  const decoder = new TextDecoder();
  const sub = nc.subscribe(subjects.state(a), {
    callback: (err, m) => {
      if (err) return;
      try {
        send("step", JSON.parse(decoder.decode(m.data)));
      } catch {
        // not a notice: nothing to show
      }
    },
  });
  const ping = setInterval(() => res.write(": ping\n\n"), pingMs);
  return {
    close() {
      clearInterval(ping);
      sub.unsubscribe();
      res.end();
    },
  };
}

/** Streams `event: index` `{ program?, changed }` at most every 300 ms while index entries (of `program`, if given) change. */
export function streamIndex(res: ServerResponse, view: IndexView, program: string | undefined): LiveStream {
  const send = open(res);
  let changed = 0;
  let timer: NodeJS.Timeout | undefined;
  const flush = () => {
    timer = undefined;
    send("index", { ...(program ? { program } : {}), changed });
    changed = 0;
  };
  const unsubscribe = view.subscribe((e) => {
    if (program !== undefined && e.program !== program) return;
    changed++;
    timer ??= setTimeout(flush, indexTickMs);
  });
  const ping = setInterval(() => res.write(": ping\n\n"), pingMs);
  return {
    close() {
      unsubscribe();
      clearInterval(ping);
      if (timer) clearTimeout(timer);
      res.end();
    },
  };
}
