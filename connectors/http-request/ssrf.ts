// connectors/http-request/ssrf.ts — SSRF defence for the HTTP connector: classifies addresses and vets each URL (scheme, allowlist, resolved IPs) before any connection.
import { lookup as dnsLookup } from "node:dns/promises";
import { isIP } from "node:net";
import ipaddr from "ipaddr.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";

/**
 * What kind of address an IP is. Only `public` is reachable without an allowlist entry.
 * `reserved` covers documentation, benchmarking, IETF-protocol and future-use ranges, and IPv6 outside
 * global unicast `2000::/3`.
 */
export type AddressClass =
  | "public"
  | "loopback"
  | "private"
  | "linkLocal"
  | "carrierGradeNat"
  | "multicast"
  | "unspecified"
  | "broadcast"
  | "reserved"
  | "uniqueLocal"
  | "siteLocal";

/** How an IPv4 address was carried inside an IPv6 one. */
export type Embedding = "IPv4-mapped" | "IPv4-translated" | "NAT64" | "6to4" | "Teredo";

/** The verdict on one address. */
export interface AddressVerdict {
  /** The address in canonical form (IPv6 without brackets). */
  readonly address: string;
  readonly class: AddressClass;
  /** Set when the class was decided by an IPv4 address embedded in this IPv6 one. */
  readonly embedded?: { readonly via: Embedding; readonly address: string };
}

const classNames: Record<AddressClass, string> = {
  public: "public",
  loopback: "loopback",
  private: "private (RFC 1918)",
  linkLocal: "link-local",
  carrierGradeNat: "carrier-grade NAT (100.64.0.0/10)",
  multicast: "multicast",
  unspecified: "unspecified",
  broadcast: "broadcast",
  reserved: "reserved (not globally routable)",
  uniqueLocal: "unique-local (fc00::/7)",
  siteLocal: "site-local (fec0::/10)",
};

/** A short human phrase for a verdict: `loopback`, `link-local (cloud metadata endpoint)`, `loopback via IPv4-mapped IPv6 (127.0.0.1)`. */
export function describeVerdict(v: AddressVerdict): string {
  let name = classNames[v.class];
  const inner = v.embedded?.address ?? v.address;
  if (v.class === "linkLocal" && inner === "169.254.169.254") name += " (cloud metadata endpoint)";
  return v.embedded ? `${name} via ${v.embedded.via} IPv6 (${v.embedded.address})` : name;
}

const v4Classes: Partial<Record<string, AddressClass>> = {
  unicast: "public",
  // Public anycast services (AS112 DNS sinks, AMT relays): routable like any public address.
  as112: "public",
  amt: "public",
  private: "private",
  loopback: "loopback",
  linkLocal: "linkLocal",
  carrierGradeNat: "carrierGradeNat",
  multicast: "multicast",
  unspecified: "unspecified",
  broadcast: "broadcast",
  reserved: "reserved",
  benchmarking: "reserved",
};

function classifyV4(a: ipaddr.IPv4): AddressClass {
  return v4Classes[a.range()] ?? "reserved";
}

function v4FromParts(hi: number, lo: number): ipaddr.IPv4 {
  return new ipaddr.IPv4([hi >> 8, hi & 0xff, lo >> 8, lo & 0xff]);
}

const globalUnicast = ipaddr.IPv6.parseCIDR("2000::/3");
const nat64WellKnown = ipaddr.IPv6.parseCIDR("64:ff9b::/96");

function embeddedVerdict(address: string, via: Embedding, inner: ipaddr.IPv4): AddressVerdict {
  return { address, class: classifyV4(inner), embedded: { via, address: inner.toString() } };
}

function classifyV6(a: ipaddr.IPv6): AddressVerdict {
  const address = a.toString();
  const p = a.parts;
  const part = (i: number) => p[i] ?? 0;
  // ipaddr.js names more ranges than its typings list (deprecatedSiteLocal, discard, …).
  const range: string = a.range();
  switch (range) {
    case "unspecified":
      return { address, class: "unspecified" };
    case "loopback":
      return { address, class: "loopback" };
    case "linkLocal":
      return { address, class: "linkLocal" };
    case "multicast":
      return { address, class: "multicast" };
    case "uniqueLocal":
      return { address, class: "uniqueLocal" };
    case "ipv4Mapped":
      return embeddedVerdict(address, "IPv4-mapped", a.toIPv4Address());
    case "rfc6145":
      return embeddedVerdict(address, "IPv4-translated", v4FromParts(part(6), part(7)));
    case "rfc6052":
      // Only the well-known /96 prefix embeds the IPv4 address in the last 32 bits; the local-use /48 is not public.
      return a.match(nat64WellKnown) ? embeddedVerdict(address, "NAT64", v4FromParts(part(6), part(7))) : { address, class: "reserved" };
    case "6to4":
      return embeddedVerdict(address, "6to4", v4FromParts(part(1), part(2)));
    case "teredo": {
      // Teredo carries the server address in bits 32-63 and the client's, inverted, in the last 32 bits.
      const server = embeddedVerdict(address, "Teredo", v4FromParts(part(2), part(3)));
      if (server.class !== "public") return server;
      return embeddedVerdict(address, "Teredo", v4FromParts(~part(6) & 0xffff, ~part(7) & 0xffff));
    }
    case "deprecatedSiteLocal":
      return { address, class: "siteLocal" };
    case "unicast":
    case "as112v6":
    case "amt":
      return { address, class: a.match(globalUnicast) ? "public" : "reserved" };
    default:
      // discard, benchmarking, documentation, ORCHID, segment routing and whatever ipaddr.js learns next.
      return { address, class: "reserved" };
  }
}

/**
 * Classifies an IP address (IPv4 in any form ipaddr.js accepts, e.g. `127.1`, `0x7f000001`, `2130706433`,
 * `0177.0.0.1`; IPv6 with or without brackets). IPv6 that embeds an IPv4 address (IPv4-mapped, translated,
 * NAT64, 6to4, Teredo) is classified by the embedded address.
 * @throws FlowmetalError `FM_ERR_BAD_REQUEST` when `address` is not an IP address.
 */
export function classifyAddress(address: string): AddressVerdict {
  const bare = address.startsWith("[") && address.endsWith("]") ? address.slice(1, -1) : address;
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(bare);
  } catch (err) {
    throw new FlowmetalError(ErrorCode.BadRequest, `'${address}' is not an IP address`, { cause: err });
  }
  if (parsed.kind() === "ipv4") {
    const v4 = parsed as ipaddr.IPv4;
    return { address: v4.toString(), class: classifyV4(v4) };
  }
  return classifyV6(parsed as ipaddr.IPv6);
}

/** True when a connection to `address` is allowed without an allowlist entry. */
export function isPublicAddress(address: string): boolean {
  return classifyAddress(address).class === "public";
}

/** One resolved address, as `dns.lookup(…, { all: true })` gives it. */
export interface LookupAddress {
  readonly address: string;
  readonly family: 4 | 6;
}

/** Resolves a hostname to all its addresses. @default `dns.promises.lookup(hostname, { all: true, verbatim: true })` */
export type HostLookup = (hostname: string) => Promise<readonly LookupAddress[]>;

const systemLookup: HostLookup = async (hostname) => {
  const all = await dnsLookup(hostname, { all: true, verbatim: true });
  return all.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

type AllowRule =
  | { readonly kind: "host"; readonly host: string; readonly port: number | undefined; readonly entry: string }
  | { readonly kind: "cidr"; readonly range: [ipaddr.IPv4 | ipaddr.IPv6, number]; readonly entry: string };

/** The checked SSRF settings; build with {@link resolveSsrfPolicy}. */
export interface SsrfPolicy {
  readonly allow: readonly AllowRule[];
  readonly lookup: HostLookup;
}

/** What SSRF protection accepts; see {@link resolveSsrfPolicy}. */
export interface SsrfOptions {
  /**
   * Destinations reachable even when they are not public: `"host"` (any port), `"host:port"`,
   * `"[::1]:8080"`, or a CIDR range of resolved addresses (`"10.1.0.0/16"`). Hosts are compared after
   * WHATWG URL normalisation, so `"127.1"` means `127.0.0.1`. @default []
   */
  allow?: readonly string[];
  /** DNS resolution (tests use a stub resolver). @default the system resolver, every address */
  lookup?: HostLookup;
}

function parseAllowEntry(entry: string): AllowRule {
  const bad = (cause?: unknown) =>
    new FlowmetalError(ErrorCode.BadRequest, `invalid allow entry '${entry}': expected host, host:port, [ipv6]:port or a CIDR range like 10.0.0.0/8`, { cause });
  if (typeof entry !== "string" || entry.length === 0 || /[\s@?#]/.test(entry)) throw bad();
  if (entry.includes("/")) {
    try {
      const bare = entry.replace(/^\[|\](?=\/)/g, "");
      return { kind: "cidr", range: ipaddr.parseCIDR(bare), entry };
    } catch (err) {
      throw bad(err);
    }
  }
  let url: URL;
  try {
    url = new URL(`http://${entry}`);
  } catch (err) {
    throw bad(err);
  }
  if (url.username || url.password || url.pathname !== "/") throw bad();
  const explicitPort = /:\d+$/.test(entry);
  // URL drops ":80" as the http default port; keep it as an explicit restriction.
  const port = explicitPort ? Number(entry.slice(entry.lastIndexOf(":") + 1)) : undefined;
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw bad();
  return { kind: "host", host: stripBrackets(url.hostname), port, entry };
}

/** Checks and freezes SSRF settings; throws `FM_ERR_BAD_REQUEST` naming a malformed allow entry. */
export function resolveSsrfPolicy(options: SsrfOptions = {}): SsrfPolicy {
  return Object.freeze({ allow: Object.freeze((options.allow ?? []).map(parseAllowEntry)), lookup: options.lookup ?? systemLookup });
}

function stripBrackets(host: string): string {
  return host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host;
}

/** The port a URL connects to. */
export function effectivePort(url: URL): number {
  if (url.port) return Number(url.port);
  return url.protocol === "https:" ? 443 : 80;
}

/** A URL cleared for one connection: the address to connect to, and nothing else. */
export interface VettedTarget {
  readonly url: URL;
  /** The hostname without brackets. */
  readonly host: string;
  readonly port: number;
  /** The one address the connection must use (pinned, so a second DNS answer cannot swap it). */
  readonly address: string;
  readonly family: 4 | 6;
  /** The allow entry that opened a non-public destination, if one did. */
  readonly allowedBy: string | undefined;
}

function refused(url: URL, refusedAs: string, message: string, extra: Record<string, unknown> = {}): FlowmetalError {
  return new FlowmetalError(ErrorCode.Forbidden, message, {
    retryable: false,
    details: { refused: refusedAs, url: safeUrl(url), ...extra },
  });
}

/** Where a URL may be shown in messages: no credentials, no query. */
export function safeUrl(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname}`;
}

/**
 * Decides whether a connection to `url` may be made, before any is: the scheme must be http or https,
 * the host is resolved (every address) unless it is an IP literal, and every address must be public
 * unless an allow entry opens the host, host:port or address range. Returns the one address to connect to.
 *
 * @throws FlowmetalError `FM_ERR_FUNCTION_FAILED`, terminal, with `details.refused` naming the class
 * (`"scheme"`, `"loopback"`, `"private"`, …) when the destination is refused; retryable when DNS fails.
 */
export async function vetUrl(url: URL, policy: SsrfPolicy): Promise<VettedTarget> {
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw refused(url, "scheme", `refused ${url.protocol} URL: the http.request connector only speaks http: and https:`);
  }
  const host = stripBrackets(url.hostname);
  const port = effectivePort(url);
  const hostRule = policy.allow.find((r) => r.kind === "host" && r.host === host && (r.port === undefined || r.port === port));
  let addresses: readonly LookupAddress[];
  const literal = isIP(host);
  if (literal !== 0) {
    addresses = [{ address: host, family: literal === 6 ? 6 : 4 }];
  } else {
    try {
      addresses = await policy.lookup(host);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      throw new FlowmetalError(ErrorCode.FunctionFailed, `cannot resolve '${host}'${typeof code === "string" ? ` (${code})` : ""}`, {
        cause: err,
        retryable: true,
        details: { dns: typeof code === "string" ? code : "failed", host },
      });
    }
    if (addresses.length === 0) {
      throw new FlowmetalError(ErrorCode.FunctionFailed, `'${host}' resolved to no address`, { retryable: true, details: { dns: "empty", host } });
    }
  }
  const first = addresses[0];
  if (!first) throw new FlowmetalError(ErrorCode.Internal, "no address to connect to");
  if (hostRule) return { url, host, port, address: first.address, family: first.family, allowedBy: hostRule.entry };
  // Every address must pass: a name that resolves to one public and one private address is refused.
  let allowedBy: string | undefined;
  for (const a of addresses) {
    const verdict = classifyAddress(a.address);
    if (verdict.class === "public") continue;
    const parsed = ipaddr.parse(verdict.address);
    const cidr = policy.allow.find((r) => r.kind === "cidr" && r.range[0].kind() === parsed.kind() && parsed.match(r.range));
    if (cidr) {
      allowedBy = cidr.entry;
      continue;
    }
    const what = describeVerdict(verdict);
    const named = literal !== 0 ? `address ${verdict.address}` : `'${host}' (resolves to ${verdict.address})`;
    throw refused(
      url,
      verdict.class,
      `refused to connect to ${named}: it is a ${what} address and SSRF protection allows only public addresses; add '${url.host}' to the connector's allow list to permit it`,
      { address: verdict.address, host, ...(verdict.embedded ? { embedded: verdict.embedded } : {}) },
    );
  }
  return { url, host, port, address: first.address, family: first.family, allowedBy };
}
