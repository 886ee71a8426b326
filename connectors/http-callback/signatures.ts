// connectors/http-callback/signatures.ts — provider webhook signatures: HMAC-SHA256 over the raw body (Stripe and GitHub styles).
import { createHmac, timingSafeEqual } from "node:crypto";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";

/**
 * How a provider signs its webhooks.
 * - `stripe`: header `Stripe-Signature: t=<unix seconds>,v1=<hex hmac of "<t>.<raw body>">`;
 * - `github`: header `X-Hub-Signature-256: sha256=<hex hmac of raw body>` (no timestamp);
 * - `hmac`: a header of your choice holding `<hex hmac>` of `<timestamp>.<raw body>`, the timestamp in
 *   `timestampHeader` (unix seconds), or of the raw body when there is no timestamp header.
 */
export interface ProviderSignature {
  scheme: "stripe" | "github" | "hmac";
  secret: string;
  /** For `hmac`: the signature header. @default "x-signature" */
  header?: string;
  /** For `hmac`: the timestamp header, if the provider sends one. */
  timestampHeader?: string;
  /** How far a signed timestamp may be from now. @default 300 */
  toleranceSec?: number;
}

function hmacHex(secret: string, data: Buffer): Buffer {
  return Buffer.from(createHmac("sha256", secret).update(data).digest("hex"), "utf8");
}

function same(a: string, b: Buffer): boolean {
  const given = Buffer.from(a, "utf8");
  return given.length === b.length && timingSafeEqual(given, b);
}

function checkTime(ts: string | undefined, toleranceSec: number, now: number): void {
  const t = Number(ts);
  if (!ts || !Number.isFinite(t)) throw new FlowmetalError(ErrorCode.Unauthorized, "webhook signature has no valid timestamp");
  if (Math.abs(now / 1000 - t) > toleranceSec) {
    throw new FlowmetalError(ErrorCode.Expired, `webhook timestamp is ${Math.round(now / 1000 - t)} s away from now, outside the ${toleranceSec} s tolerance`);
  }
}

/** Verifies a webhook; throws `FM_ERR_UNAUTHORIZED` (missing or wrong signature) or `FM_ERR_EXPIRED` (stale timestamp). */
export function verifySignature(p: ProviderSignature, headers: Record<string, string | string[] | undefined>, raw: Buffer, now = Date.now()): void {
  const get = (name: string) => {
    const v = headers[name.toLowerCase()];
    return Array.isArray(v) ? v[0] : v;
  };
  const tolerance = p.toleranceSec ?? 300;
  const missing = (h: string) => new FlowmetalError(ErrorCode.Unauthorized, `webhook has no ${h} header`);
  const wrong = () => new FlowmetalError(ErrorCode.Unauthorized, "webhook signature does not match the body");
  switch (p.scheme) {
    case "stripe": {
      const h = get("stripe-signature");
      if (!h) throw missing("Stripe-Signature");
      const parts = h.split(",").map((x) => x.trim().split("=") as [string, string?]);
      const t = parts.find(([k]) => k === "t")?.[1];
      checkTime(t, tolerance, now);
      const want = hmacHex(p.secret, Buffer.concat([Buffer.from(`${t}.`), raw]));
      if (!parts.some(([k, v]) => k === "v1" && v !== undefined && same(v, want))) throw wrong();
      return;
    }
    case "github": {
      const h = get("x-hub-signature-256");
      if (!h) throw missing("X-Hub-Signature-256");
      if (!h.startsWith("sha256=") || !same(h.slice(7), hmacHex(p.secret, raw))) throw wrong();
      return;
    }
    case "hmac": {
      const name = p.header ?? "x-signature";
      const h = get(name);
      if (!h) throw missing(name);
      let data = raw;
      if (p.timestampHeader) {
        const t = get(p.timestampHeader);
        checkTime(t, tolerance, now);
        data = Buffer.concat([Buffer.from(`${t}.`), raw]);
      }
      if (!same(h.replace(/^sha256=/, ""), hmacHex(p.secret, data))) throw wrong();
      return;
    }
  }
}
