// node/admin/ui/api.ts — browser side: calls to the admin API (with the bearer token, if any) and live event streams.
/// <reference lib="dom" />

const tokenKey = "flowmetal.token";

/** An error answered by the API: `{ code, message }`; status 401 means a token is needed. */
export class ApiError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

/** The bearer token this browser keeps for the admin API, if any. */
export function token(): string | null {
  return localStorage.getItem(tokenKey);
}

/** Keeps (or with null, forgets) the bearer token. */
export function setToken(t: string | null): void {
  if (t) localStorage.setItem(tokenKey, t);
  else localStorage.removeItem(tokenKey);
}

function headers(extra: Record<string, string> = {}): Record<string, string> {
  const t = token();
  return t ? { ...extra, Authorization: `Bearer ${t}` } : extra;
}

async function parse<T>(res: Response): Promise<T> {
  const text = await res.text();
  let body: unknown;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  if (!res.ok) {
    const e = (body ?? {}) as { code?: string; message?: string };
    throw new ApiError(res.status, e.code ?? `HTTP_${res.status}`, e.message ?? (text || res.statusText));
  }
  return body as T;
}

/** GETs a JSON route; throws {@link ApiError} for an error answer. */
export async function get<T>(path: string): Promise<T> {
  return parse<T>(await fetch(path, { headers: headers() }));
}

/** POSTs JSON to a route; throws {@link ApiError} for an error answer. */
export async function post<T>(path: string, body: unknown): Promise<T> {
  return parse<T>(await fetch(path, { method: "POST", headers: headers({ "Content-Type": "application/json" }), body: JSON.stringify(body) }));
}

/**
 * Follows `/api/live?<query>` (server-sent events, read with fetch so the token can go in a header) and
 * calls `on` for each event until `signal` aborts. Reconnects after a second when the stream drops.
 */
export function live(query: string, on: (event: string, data: unknown) => void, signal: AbortSignal): void {
  const run = async () => {
    while (!signal.aborted) {
      try {
        const res = await fetch(`/api/live?${query}`, { headers: headers({ Accept: "text/event-stream" }), signal });
        if (!res.ok || !res.body) throw new Error(`live stream: HTTP ${res.status}`);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i: number;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            let event = "message";
            let data = "";
            for (const line of block.split("\n")) {
              if (line.startsWith("event: ")) event = line.slice(7);
              else if (line.startsWith("data: ")) data += line.slice(6);
            }
            if (data) {
              try {
                on(event, JSON.parse(data));
              } catch {
                // a malformed event: skip it
              }
            }
          }
        }
      } catch {
        // dropped or aborted: retry below unless aborted
      }
      if (!signal.aborted) await new Promise((r) => setTimeout(r, 1000));
    }
  };
  void run();
}
