// connectors/http-callback/tokens.ts — callback tokens: unguessable, HMAC-signed, bound to an actor, a callback id, an event type and an expiry.
import { createHmac, timingSafeEqual } from "node:crypto";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";
import { parseActorAddress } from "../../protocol/subjects.js";

/** What a callback token says. */
export interface CallbackClaims {
  /** The actor the POST is delivered to, `<program>/<key>`. */
  actor: string;
  /** The callback's id (by default the id of the call that minted it). */
  callbackId: string;
  /** The event type the POST becomes. */
  event: string;
  /** Expiry, ms since the epoch. */
  expiresAt: number;
}

interface Packed {
  v: 1;
  a: string;
  c: string;
  t: string;
  e: number;
}

function sign(secret: Buffer, payload: string): Buffer {
  return createHmac("sha256", secret).update(`flowmetal-callback-v1.${payload}`).digest();
}

/** Checks a signing secret: at least 32 bytes. */
export function parseSecret(secret: string | Buffer | undefined): Buffer {
  const b = typeof secret === "string" ? Buffer.from(secret, "utf8") : secret;
  if (!b || b.length < 32) {
    throw new FlowmetalError(ErrorCode.BadRequest, "the callback signing secret must be at least 32 bytes (set FLOWMETAL_CALLBACK_SECRET)");
  }
  return b;
}

/** Mints a token: `<base64url claims>.<base64url HMAC-SHA256>`. */
export function mintToken(secret: Buffer, claims: CallbackClaims): string {
  const packed: Packed = { v: 1, a: claims.actor, c: claims.callbackId, t: claims.event, e: claims.expiresAt };
  const payload = Buffer.from(JSON.stringify(packed)).toString("base64url");
  return `${payload}.${sign(secret, payload).toString("base64url")}`;
}

/**
 * Verifies a token and returns its claims. Throws `FM_ERR_UNAUTHORIZED` for anything not signed by
 * `secret` (the comparison is constant-time) and `FM_ERR_EXPIRED` once past its expiry.
 */
export function verifyToken(secret: Buffer, token: string, now = Date.now()): CallbackClaims {
  const bad = () => new FlowmetalError(ErrorCode.Unauthorized, "unknown or invalid callback token");
  if (typeof token !== "string" || token.length > 2048) throw bad();
  const dot = token.indexOf(".");
  if (dot <= 0 || dot !== token.lastIndexOf(".")) throw bad();
  const payload = token.slice(0, dot);
  const given = Buffer.from(token.slice(dot + 1), "base64url");
  const want = sign(secret, payload);
  if (given.length !== want.length || !timingSafeEqual(given, want)) throw bad();
  let p: Packed;
  try {
    p = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as Packed;
  } catch {
    throw bad();
  }
  if (p.v !== 1 || typeof p.a !== "string" || typeof p.c !== "string" || typeof p.t !== "string" || typeof p.e !== "number") throw bad();
  parseActorAddress(p.a);
  if (now > p.e) throw new FlowmetalError(ErrorCode.Expired, `callback token expired at ${new Date(p.e).toISOString()}`);
  return { actor: p.a, callbackId: p.c, event: p.t, expiresAt: p.e };
}
