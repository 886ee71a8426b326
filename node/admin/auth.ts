// node/admin/auth.ts — bearer tokens of the admin API: which scope a request's token grants.
import { createHash, timingSafeEqual } from "node:crypto";

/** Tokens of the admin API. With neither set, the API is open (bind it to loopback then). */
export interface AdminTokens {
  /** Grants reading: programs, actors, history, cluster, metrics. */
  read?: string | undefined;
  /** Grants everything, including sending events. */
  admin?: string | undefined;
}

/** What a token may do: `read` (GET routes, metrics) or `admin` (everything). */
export type Scope = "read" | "admin";

const digest = (s: string) => createHash("sha256").update(s).digest();

/** Checks `Authorization: Bearer <token>` in constant time; returns the scope it grants, if any. */
export function createTokenCheck(tokens: AdminTokens): { enabled: boolean; scopeOf(header: string | undefined): Scope | undefined } {
  const admin = tokens.admin ? digest(tokens.admin) : undefined;
  const read = tokens.read ? digest(tokens.read) : undefined;
  const enabled = admin !== undefined || read !== undefined;
  return {
    enabled,
    scopeOf(header) {
      if (!enabled) return "admin";
      const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? "");
      if (!m) return undefined;
      const got = digest(m[1]!);
      // Compare against both, always, so the time does not tell which one matched.
      const isAdmin = admin !== undefined && timingSafeEqual(got, admin);
      const isRead = read !== undefined && timingSafeEqual(got, read);
      return isAdmin ? "admin" : isRead ? "read" : undefined;
    },
  };
}
