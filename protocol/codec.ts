// protocol/codec.ts — turning payloads and journal records into bytes and back, with size and depth limits checked before parsing.
import { Decoder, Encoder } from "cbor-x";
import { ErrorCode, FlowmetalError } from "./errors.js";

/** How a payload is serialised on the wire. */
export type Encoding = "json" | "cbor";

/** Limits checked before a payload is parsed. Build one with {@link resolveDecodeLimits}. */
export interface DecodeLimits {
  /**
   * The largest payload accepted, in bytes.
   * @default 1048576 (1 MiB)
   */
  readonly maxBytes: number;
  /**
   * The deepest nesting of arrays and objects accepted; a scalar is depth 0, `[]` is depth 1.
   * @default 64
   */
  readonly maxDepth: number;
}

const payloadDefaults: DecodeLimits = Object.freeze({ maxBytes: 1024 * 1024, maxDepth: 64 });
const recordDefaults: DecodeLimits = Object.freeze({ maxBytes: 64 * 1024 * 1024, maxDepth: 256 });

/**
 * Fills in defaults and checks that every limit is a positive safe integer; the result is frozen.
 * Throws `FM_ERR_BAD_REQUEST` naming the bad limit.
 */
export function resolveDecodeLimits(opts: Partial<DecodeLimits> = {}): DecodeLimits {
  const limits: { maxBytes: number; maxDepth: number } = { ...payloadDefaults };
  for (const name of ["maxBytes", "maxDepth"] as const) {
    const v: unknown = opts[name];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 1) {
      throw new FlowmetalError(ErrorCode.BadRequest, `decode limit ${name} is ${String(v)}: use a positive integer`);
    }
    limits[name] = v;
  }
  return Object.freeze(limits);
}

const mediaTypes = { json: "application/json", cbor: "application/cbor" } as const satisfies Record<Encoding, string>;

/**
 * The encoding named by a `Content-Type` header: none or `application/json` is JSON, `application/cbor` is CBOR;
 * parameters such as `; charset=utf-8` are ignored. Throws `FM_ERR_MALFORMED_PAYLOAD` for anything else.
 */
export function encodingFromContentType(contentType: string | undefined | null): Encoding {
  const given = contentType ?? "";
  const media = given.split(";", 1)[0]!.trim().toLowerCase();
  if (media === "" || media === mediaTypes.json) return "json";
  if (media === mediaTypes.cbor) return "cbor";
  const shown = given.length > 60 ? `${given.slice(0, 60)}…` : given;
  throw malformed(`unsupported content type '${shown}': send ${mediaTypes.json} or ${mediaTypes.cbor}`);
}

/** The `Content-Type` header value for an encoding. */
export function contentTypeOf(encoding: Encoding): string {
  return mediaTypes[encoding];
}

/**
 * Decodes a payload into JSON-like data (null, booleans, finite numbers, strings, arrays, plain objects).
 * Size and nesting depth are checked before anything is parsed or allocated.
 *
 * CBOR accepts only what JSON can say: text-string map keys, no byte strings, no `undefined` or other simple
 * values, no NaN or Infinity, and no tags except 0 and 1 (date/time), which decode to ISO 8601 strings, the
 * same value `JSON.stringify` gives a `Date`. A `"__proto__"` key becomes an ordinary own property in both
 * encodings, as `JSON.parse` makes it; `Object.prototype` is never touched.
 *
 * Throws `FM_ERR_PAYLOAD_TOO_LARGE`, `FM_ERR_PAYLOAD_TOO_DEEP` or `FM_ERR_MALFORMED_PAYLOAD`.
 * @param limits - @default `resolveDecodeLimits()` (1 MiB, depth 64)
 */
export function decodePayload(bytes: Uint8Array, encoding: Encoding, limits: DecodeLimits = payloadDefaults): unknown {
  checkSize(bytes, limits, "payload");
  return encoding === "json" ? decodeJson(bytes, limits.maxDepth) : decodeCbor(bytes, limits.maxDepth, "payload");
}

/**
 * Encodes JSON-like data. Both encodings carry exactly what `JSON.stringify` keeps (dates become ISO strings,
 * `undefined` properties are dropped, NaN becomes null), so a value decodes the same whichever was used.
 * Throws `FM_ERR_MALFORMED_PAYLOAD` for values JSON cannot carry (BigInt, cycles, a bare `undefined`).
 */
export function encodePayload(value: unknown, encoding: Encoding): Uint8Array {
  const text = toJsonText(value);
  return encoding === "json" ? utf8Encoder.encode(text) : cborEncode(JSON.parse(text));
}

/**
 * Encodes a journal record as CBOR, with the same data model as {@link encodePayload} except that
 * `undefined` fields are kept (XState snapshots have them). Plain data (see {@link isPlainData}) is encoded
 * directly. Anything else is encoded too and its bytes checked; what falls outside the data model (BigInt
 * past 64 bits, a Map with non-text keys, NaN, a string with a lone surrogate…) goes through JSON like a
 * payload, or throws.
 */
export function encodeRecord(value: unknown): Uint8Array {
  // Every step comes here: plain data needs no scan of its bytes.
  if (isPlainData(value, recordDefaults.maxDepth)) return cborEncode(value);
  const direct = cborEncode(value);
  try {
    scanCbor(direct, recordDefaults.maxDepth, "journal record", true);
    return direct;
  } catch {
    return cborEncode(JSON.parse(toJsonText(value), wellFormed));
  }
}

/**
 * JSON.parse reviver: lone surrogates (which JSON keeps as escapes) become U+FFFD, in values and keys, so
 * the CBOR written is valid UTF-8 and the record stays readable.
 */
function wellFormed(this: unknown, _key: string, v: unknown): unknown {
  if (typeof v === "string") return v.toWellFormed();
  if (v === null || typeof v !== "object" || Array.isArray(v)) return v;
  const obj = v as Record<string, unknown>;
  if (Object.keys(obj).every((k) => k.isWellFormed())) return v;
  const fixed: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(obj)) Object.defineProperty(fixed, k.toWellFormed(), { value: x, enumerable: true, writable: true, configurable: true });
  return fixed;
}

const int64Range = 1n << 64n;

/**
 * True when cbor-x encodes `value` as the CBOR subset {@link decodeRecord} reads back unchanged: plain
 * objects and arrays (constructor Object or Array, which is how cbor-x picks its map and array paths)
 * nested at most `depth` deep, well-formed strings, finite numbers, BigInts within 64 bits (written as
 * integers), booleans, null and undefined. A walk over the values costs about a quarter of a scan of the
 * encoded bytes, which showed in a node's profile of every step.
 */
function isPlainData(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "string":
      return value.isWellFormed();
    case "number":
      return Number.isFinite(value);
    case "boolean":
    case "undefined":
      return true;
    case "bigint":
      return value < int64Range && value > -int64Range;
    case "object": {
      if (value === null) return true;
      if (depth <= 0) return false;
      const kind = (value as { constructor?: unknown }).constructor;
      if (kind === Array) {
        if (!Array.isArray(value)) return false; // an object whose own "constructor" is Array
        const list = value as unknown[];
        for (let i = 0; i < list.length; i++) if (!isPlainData(list[i], depth - 1)) return false;
        return true;
      }
      if (kind !== Object) return false;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj); // what cbor-x writes (variableMapSize)
      for (let i = 0; i < keys.length; i++) {
        const key = keys[i]!;
        if (!key.isWellFormed() || !isPlainData(obj[key], depth - 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * Decodes a journal record written by {@link encodeRecord}, checked like a CBOR payload.
 * @param limits - @default `{ maxBytes: 64 MiB, maxDepth: 256 }`
 */
export function decodeRecord(bytes: Uint8Array, limits: DecodeLimits = recordDefaults): unknown {
  checkSize(bytes, limits, "journal record");
  return decodeCbor(bytes, limits.maxDepth, "journal record", true);
}

// ---- shared ----

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder("utf-8", { fatal: true });
// int64AsNumber (missing from cbor-x's types) makes 64-bit integers numbers, as JSON.parse would, not BigInts.
const decoderOptions = { mapsAsObjects: true, useRecords: false, structuredClone: false, bundleStrings: false, int64AsNumber: true };
const cborDecoder = new Decoder(decoderOptions);
// Used only when a "__proto__" key is present: cbor-x renames it to "__proto_" in objects, so read Maps instead.
const cborMapDecoder = new Decoder({ ...decoderOptions, mapsAsObjects: false });
// variableMapSize: the shortest map header for each object (cbor-x otherwise always writes a 16-bit length):
// records 6% smaller and their encoding 8% faster.
const cborEncoder = new Encoder({ mapsAsObjects: true, useRecords: false, structuredClone: false, bundleStrings: false, variableMapSize: true });

function malformed(message: string, cause?: unknown): FlowmetalError {
  return new FlowmetalError(ErrorCode.MalformedPayload, message, cause === undefined ? {} : { cause });
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function checkSize(bytes: Uint8Array, limits: DecodeLimits, what: string): void {
  // Written to fail closed: a NaN limit rejects everything instead of nothing.
  if (bytes.length <= limits.maxBytes) return;
  throw new FlowmetalError(
    ErrorCode.PayloadTooLarge,
    `${what} is ${bytes.length} bytes, over the ${limits.maxBytes}-byte limit (raise maxBytes, or send less data)`,
    { details: { bytes: bytes.length, maxBytes: limits.maxBytes } },
  );
}

function tooDeep(what: string, maxDepth: number): FlowmetalError {
  return new FlowmetalError(
    ErrorCode.PayloadTooDeep,
    `${what} nests arrays/objects deeper than the ${maxDepth}-level limit (raise maxDepth, or flatten the data)`,
    { details: { maxDepth } },
  );
}

function toJsonText(value: unknown): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value);
  } catch (err) {
    throw malformed(`value cannot be encoded: ${messageOf(err)} (send only JSON-like data)`, err);
  }
  if (text === undefined) throw malformed(`value cannot be encoded: a bare ${typeof value} has no JSON form (send null instead)`);
  return text;
}

function cborEncode(value: unknown): Uint8Array {
  try {
    const buf = cborEncoder.encode(value);
    // A plain view, not the Buffer cbor-x returns: Buffer#slice shares memory (with cbor-x's reused slab), Uint8Array#slice copies.
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (err) {
    throw malformed(`value cannot be encoded as CBOR: ${messageOf(err)}`, err);
  }
}

// ---- JSON ----

function decodeJson(bytes: Uint8Array, maxDepth: number): unknown {
  let text: string;
  try {
    text = utf8Decoder.decode(bytes);
  } catch (err) {
    throw malformed("JSON payload is not valid UTF-8 (encode text as UTF-8)", err);
  }
  // Linear scan for [ and { outside strings, so JSON.parse never sees a payload that nests too deep.
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (!(++depth <= maxDepth)) throw tooDeep("payload", maxDepth);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw malformed(`payload is not valid JSON: ${messageOf(err)}`, err);
  }
}

// ---- CBOR ----

const protoKey = [0x5f, 0x5f, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x5f, 0x5f]; // "__proto__"

interface CborScan {
  /** A tag 0/1 date was seen, so the decoded value needs Dates turned into strings. */
  dates: boolean;
  /** A "__proto__" map key was seen. */
  proto: boolean;
}

function decodeCbor(bytes: Uint8Array, maxDepth: number, what: string, allowUndefined = false): unknown {
  const scan = scanCbor(bytes, maxDepth, what, allowUndefined);
  try {
    const value: unknown = (scan.proto ? cborMapDecoder : cborDecoder).decode(bytes);
    return scan.dates || scan.proto ? toPlain(value, what) : value;
  } catch (err) {
    if (FlowmetalError.is(err)) throw err;
    throw malformed(`${what} is not valid CBOR: ${messageOf(err)}`, err);
  }
}

/** Turns Dates into ISO strings and Maps (all text-keyed, checked by the scan) into plain objects. */
function toPlain(value: unknown, what: string): unknown {
  if (value instanceof Date) {
    if (Number.isNaN(value.getTime())) throw malformed(`${what} holds a CBOR date/time that is not a valid date`);
    return value.toISOString();
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = toPlain(value[i], what);
    return value;
  }
  // Object.fromEntries defines own properties, so a "__proto__" key stays data and never sets a prototype.
  if (value instanceof Map) return Object.fromEntries(Array.from(value, ([k, v]) => [k, toPlain(v, what)]));
  if (value !== null && typeof value === "object") {
    const obj = value as Record<string, unknown>;
    for (const k of Object.keys(obj)) obj[k] = toPlain(obj[k], what);
  }
  return value;
}

/**
 * Walks the CBOR item headers without decoding or allocating anything in proportion to declared lengths:
 * checks nesting depth, that every declared length fits in the bytes that remain, that the item ends exactly
 * at the end of the buffer, and that it only uses the JSON-like subset {@link decodePayload} documents.
 */
function scanCbor(b: Uint8Array, maxDepth: number, what: string, allowUndefined = false): CborScan {
  const end = b.length;
  const scan: CborScan = { dates: false, proto: false };
  // One entry per open array/map: >= 0 is items left in a definite one, < 0 is -(items seen + 1) in an indefinite one.
  const open: number[] = [];
  const isMap: boolean[] = [];
  let pos = 0;
  let tag = -1; // the date tag whose content is read next, or -1
  const fail = (at: number, problem: string): FlowmetalError => malformed(`${what} is not valid CBOR: ${problem} at byte ${at}`);
  // One item finished: count it in the innermost open container, closing definite ones that are now full.
  const finished = (): void => {
    for (let top = open.length - 1; top >= 0; top = open.length - 1) {
      const left = open[top]!;
      if (left < 0 || left > 1) {
        open[top] = left - 1;
        return;
      }
      open.pop();
      isMap.pop();
    }
  };
  do {
    const at = pos;
    if (pos >= end) throw fail(at, "the data ends in the middle of an item (truncated)");
    const initial = b[pos++]!;
    const major = initial >> 5;
    const info = initial & 0x1f;
    const top = open.length - 1;
    const left = open[top] ?? 0;
    const atKey = top >= 0 && isMap[top]! && (left >= 0 ? left % 2 === 0 : (-left - 1) % 2 === 0);
    if (initial === 0xff) {
      if (top < 0 || left >= 0) throw fail(at, "a break (0xff) outside an indefinite-length array or map");
      if (tag >= 0) throw fail(at, `tag ${tag} has no content`);
      if (isMap[top] && !atKey) throw fail(at, "an indefinite-length map ends after a key with no value");
      open.pop();
      isMap.pop();
      finished();
      continue;
    }
    let arg = info;
    if (info >= 24 && info <= 27) {
      const n = 1 << (info - 24);
      if (n > end - pos) throw fail(at, `a ${n}-byte length or value runs past the end of the data (truncated)`);
      arg = 0;
      for (let i = 0; i < n; i++) arg = arg * 256 + b[pos + i]!; // exact below 2^53; huge values only ever compare as too big
      pos += n;
    } else if (info >= 28 && info <= 30) throw fail(at, `reserved additional information ${info} (malformed header)`);
    if (tag === 0 && major !== 3) throw fail(at, "tag 0 (date/time string) must wrap a text string");
    if (tag === 1 && major > 1 && !(major === 7 && info >= 25 && info <= 27)) throw fail(at, "tag 1 (epoch date/time) must wrap a number");
    tag = -1;
    if (atKey && major !== 3) throw fail(at, `a map key of major type ${major}; only text-string keys are accepted`);
    if (info === 31 && major !== 4 && major !== 5) throw fail(at, `an indefinite length on major type ${major}; only arrays and maps may be indefinite`);
    switch (major) {
      case 2:
        throw fail(at, "a byte string; JSON-like data has none (send text or numbers)");
      case 3:
        if (arg > end - pos) throw fail(at, `a text string declares ${arg} bytes but only ${end - pos} remain (truncated)`);
        if (!isUtf8(b, pos, pos + arg)) throw fail(at, "a text string that is not valid UTF-8");
        if (atKey && arg === protoKey.length && protoKey.every((c, i) => b[pos + i] === c)) scan.proto = true;
        pos += arg;
        break;
      case 4:
      case 5: {
        if (!(open.length + 1 <= maxDepth)) throw tooDeep(what, maxDepth);
        const items = info === 31 ? -1 : major === 5 ? arg * 2 : arg;
        // Every item takes at least one byte, so a length past the remaining bytes is rejected before cbor-x sees it.
        if (items > end - pos) throw fail(at, `${major === 4 ? "an array" : "a map"} declares ${arg} entries but only ${end - pos} bytes remain`);
        if (items === 0) break;
        open.push(items);
        isMap.push(major === 5);
        continue;
      }
      case 6:
        if (arg !== 0 && arg !== 1) throw fail(at, `tag ${arg}; only tags 0 and 1 (date/time) are accepted`);
        tag = arg;
        scan.dates = true;
        continue;
      case 7:
        if (info >= 25) {
          // The exponent bits all set means NaN or Infinity, which JSON cannot carry.
          const hi = b[at + 1]!;
          const lo = b[at + 2]!;
          const nonFinite = info === 25 ? (hi & 0x7c) === 0x7c : (hi & 0x7f) === 0x7f && (info === 26 ? lo & 0x80 : (lo & 0xf0) === 0xf0);
          if (nonFinite) throw fail(at, "NaN or Infinity; JSON-like data has only finite numbers");
        } else if ((info < 20 || info > 22) && !(allowUndefined && info === 23)) throw fail(at, info === 23 ? "undefined; send null instead" : `simple value ${arg}; only false, true and null are accepted`);
        break;
    }
    finished();
  } while (open.length > 0 || tag >= 0);
  if (pos !== end) throw malformed(`${what} is not valid CBOR: ${end - pos} trailing byte(s) after the item ending at byte ${pos}`);
  return scan;
}

/** True when b[start, end) is well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
function isUtf8(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; ) {
    const c = b[i++]!;
    if (c < 0x80) continue;
    const more = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1;
    if (more < 0 || i + more > end) return false;
    const lo = c === 0xe0 ? 0xa0 : c === 0xf0 ? 0x90 : 0x80;
    const hi = c === 0xed ? 0x9f : c === 0xf4 ? 0x8f : 0xbf;
    if (b[i]! < lo || b[i]! > hi) return false;
    for (let k = 1; k < more; k++) if ((b[i + k]! & 0xc0) !== 0x80) return false;
    i += more;
  }
  return true;
}
