// test/protocol/codec.test.ts — payload and journal-record codecs: round trips, limits, malformed input, prototype safety.
import { describe, it, expect } from "vitest";
import { Decoder } from "cbor-x";
import {
  contentTypeOf,
  decodePayload,
  decodeRecord,
  encodePayload,
  encodeRecord,
  encodingFromContentType,
  resolveDecodeLimits,
  type Encoding,
} from "../../protocol/codec.js";
import { ErrorCode, FlowmetalError } from "../../protocol/errors.js";

const encodings = ["json", "cbor"] as const;
const MiB = 1024 * 1024;

function expectError(fn: () => unknown, code: ErrorCode): FlowmetalError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(FlowmetalError.is(caught, code), `expected ${code}, got ${String(caught)}`).toBe(true);
  return caught as FlowmetalError;
}

const bytesOf = (...parts: (number | string)[]): Uint8Array =>
  Uint8Array.from(parts.flatMap((p) => (typeof p === "string" ? [...Buffer.from(p, "utf8")] : [p])));

const repeatBytes = (unit: Uint8Array, times: number, last: Uint8Array): Uint8Array => {
  const out = new Uint8Array(unit.length * times + last.length);
  for (let i = 0; i < times; i++) out.set(unit, i * unit.length);
  out.set(last, unit.length * times);
  return out;
};

/** `depth` nested arrays, e.g. depth 2 is `[[]]`, written directly so no encoder recursion is involved. */
function nestedArrays(depth: number, encoding: Encoding): Uint8Array {
  if (encoding === "json") return Buffer.from("[".repeat(depth) + "]".repeat(depth));
  return repeatBytes(bytesOf(0x81), depth - 1, bytesOf(0x80));
}

/** `depth` nested objects, e.g. depth 2 is `{"k":{}}`. */
function nestedObjects(depth: number, encoding: Encoding): Uint8Array {
  if (encoding === "json") return Buffer.from('{"k":'.repeat(depth - 1) + "{}" + "}".repeat(depth - 1));
  return repeatBytes(bytesOf(0xa1, 0x61, "k"), depth - 1, bytesOf(0xa0));
}

/** A string value whose encoding is exactly `size` bytes (JSON adds 2 quotes, CBOR a 5-byte header past 64 KiB). */
function payloadOfSize(size: number, encoding: Encoding): Uint8Array {
  const bytes = encodePayload("a".repeat(size - (encoding === "json" ? 2 : 5)), encoding);
  expect(bytes.length).toBe(size);
  return bytes;
}

const sample = {
  name: "Zoë — 日本語 🚀",
  empty: "",
  escapes: 'quote " backslash \\ nul \u0000 newline \n',
  numbers: [0, 1, -1, 23, 24, 255, 256, 65535, 65536, 2 ** 32, -(2 ** 32) - 1, 2 ** 53 - 1, -(2 ** 53) + 1, 1.5, -0.1, 1e300, 5e-324],
  flags: [true, false, null],
  nested: { a: [{ b: { c: [[], {}, [[1]]] } }], "key with spaces": { "🔑": "v" } },
};

const wellFormed: Record<Encoding, [string, Uint8Array, unknown][]> = {
  json: [
    ["whitespace everywhere", Buffer.from(' \n{ "a" : [ 1 , { } ] }\t'), { a: [1, {}] }],
    ["\\u escapes and surrogate pairs", Buffer.from('"\\u0041\\ud83d\\ude80\\""'), 'A🚀"'],
    ["a UTF-8 byte order mark", bytesOf(0xef, 0xbb, 0xbf, "[1]"), [1]],
    ["a big integer", Buffer.from("18446744073709551615"), 2 ** 64],
  ],
  cbor: [
    ["indefinite-length arrays and maps", bytesOf(0x9f, 0x9f, 0xff, 0xbf, 0x61, "a", 0x9f, 0x01, 0xff, 0xff, 0xff), [[], { a: [1] }]],
    ["half and single precision floats", bytesOf(0x82, 0xf9, 0x3e, 0x00, 0xfa, 0x47, 0x7f, 0xe0, 0x00), [1.5, 65504]],
    ["a 64-bit integer", bytesOf(0x3b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), -(2 ** 64)],
    ["non-minimal lengths", bytesOf(0xb9, 0x00, 0x01, 0x78, 0x01, "k", 0x98, 0x00), { k: [] }],
  ],
};

const malformed: Record<Encoding, [string, Uint8Array][]> = {
  json: [
    ["a syntax error", Buffer.from('{"a":}')],
    ["a missing colon", Buffer.from('{"a" 1}')],
    ["an empty payload", new Uint8Array(0)],
    ["trailing garbage", Buffer.from("{} x")],
    ["a bare word", Buffer.from("undefined")],
    ["NaN", Buffer.from("[NaN]")],
    ["invalid UTF-8 in a string", bytesOf('"', 0xc3, 0x28, '"')],
    ["an overlong UTF-8 sequence", bytesOf('"', 0xc0, 0x80, '"')],
  ],
  cbor: [
    ["an indefinite-length array without a break", bytesOf(0x9f, 0x01, 0x02)],
    ["a text string declaring 0xffffffff bytes in a 10-byte payload", bytesOf(0x7a, 0xff, 0xff, 0xff, 0xff, "abcde")],
    ["an array declaring 0xffffffff items", bytesOf(0x9a, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02)],
    ["a map declaring a 64-bit length", bytesOf(0xbb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x61, "a", 0x01)],
    ["a map declaring 2^32 entries", bytesOf(0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x61, "a", 0x01)],
    ["a text string declaring a 64-bit length", bytesOf(0x7b, 0x80, 0, 0, 0, 0, 0, 0, 0, "abc")],
    ["reserved additional info 28", bytesOf(0x1c)],
    ["reserved additional info 29 in an array", bytesOf(0x82, 0x01, 0x3d)],
    ["reserved additional info 30 on a simple value", bytesOf(0xfe)],
    ["trailing garbage after the item", bytesOf(0xa1, 0x61, "a", 0x01, 0x00)],
    ["two top-level items", bytesOf(0x01, 0x02)],
    ["invalid UTF-8 in a text string", bytesOf(0x62, 0xc3, 0x28)],
    ["invalid UTF-8 in a map key", bytesOf(0xa1, 0x61, 0xff, 0x01)],
    ["a UTF-16 surrogate encoded in UTF-8", bytesOf(0x63, 0xed, 0xa0, 0x80)],
    ["an overlong UTF-8 sequence", bytesOf(0x62, 0xc0, 0x80)],
    ["a break outside an indefinite item", bytesOf(0xff)],
    ["an indefinite map ending after a key", bytesOf(0xbf, 0x61, "a", 0xff)],
    ["an indefinite-length text string", bytesOf(0x7f, 0x61, "a", 0xff)],
    ["a byte string", bytesOf(0x42, 0x01, 0x02)],
    ["undefined", bytesOf(0xa1, 0x61, "a", 0xf7)],
    ["a simple value", bytesOf(0xf8, 0x20)],
    ["a half-precision NaN", bytesOf(0xf9, 0x7e, 0x00)],
    ["a single-precision Infinity", bytesOf(0xfa, 0x7f, 0x80, 0x00, 0x00)],
    ["a double-precision -Infinity", bytesOf(0xfb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0)],
    ["an integer map key", bytesOf(0xa1, 0x01, 0x02)],
    ["an array map key", bytesOf(0xa1, 0x80, 0x02)],
    ["a bignum tag", bytesOf(0xc2, 0x41, 0x01)],
    ["cbor-x's generic-object tag 27", bytesOf(0xd8, 0x1b, 0x82, 0x65, "Error", 0x61, "x")],
    ["cbor-x's record-definition tag", bytesOf(0xd9, 0xdf, 0xff, 0x80)],
    ["the self-describe tag", bytesOf(0xd9, 0xd9, 0xf7, 0x01)],
    ["a tag with no content", bytesOf(0x81, 0xc1)],
    ["a date tag wrapping a number as a string", bytesOf(0xc0, 0x01)],
    ["a date tag wrapping a text string that is no date", bytesOf(0xc0, 0x63, "abc")],
    ["an epoch date out of range", bytesOf(0xc1, 0xfb, 0x7f, 0xef, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)],
  ],
};

describe("decodePayload", () => {
  describe.each(encodings)("%s", (encoding) => {
    const limits = (maxBytes: number, maxDepth: number) => resolveDecodeLimits({ maxBytes, maxDepth });

    it("returns the encoded value when round-tripping nested objects, arrays, unicode and numbers", () => {
      expect(decodePayload(encodePayload(sample, encoding), encoding)).toEqual(sample);
    });

    it("returns scalars when the top-level item is not a container", () => {
      for (const v of [0, -7, 1.25, "x", "", true, false, null]) expect(decodePayload(encodePayload(v, encoding), encoding)).toBe(v);
    });

    it.each(wellFormed[encoding])("decodes the value when the payload has %s", (_, bytes, expected) => {
      expect(decodePayload(bytes, encoding)).toEqual(expected);
    });

    it("decodes when the bytes are a view into a larger buffer", () => {
      const bytes = encodePayload(sample, encoding);
      const big = new Uint8Array(bytes.length + 20).fill(0xff);
      big.set(bytes, 10);
      expect(decodePayload(big.subarray(10, 10 + bytes.length), encoding)).toEqual(sample);
    });

    it("accepts a payload when it is exactly the default 1 MiB", () => {
      expect(decodePayload(payloadOfSize(MiB, encoding), encoding)).toHaveLength(MiB - (encoding === "json" ? 2 : 5));
    });

    it("rejects a payload as too large naming the limit when it is one byte over the default 1 MiB", () => {
      const err = expectError(() => decodePayload(payloadOfSize(MiB + 1, encoding), encoding), ErrorCode.PayloadTooLarge);
      expect(err.message).toContain(`is ${MiB + 1} bytes, over the ${MiB}-byte limit`);
      expect(err.message).toContain("maxBytes");
    });

    it("checks size before parsing when an over-limit payload is also malformed", () => {
      const err = expectError(() => decodePayload(new Uint8Array(11).fill(0xff), encoding, limits(10, 64)), ErrorCode.PayloadTooLarge);
      expect(err.message).toContain("10-byte limit");
    });

    it("accepts exactly maxBytes and rejects one more when the limit is custom", () => {
      const bytes = encodePayload(sample, encoding);
      expect(decodePayload(bytes, encoding, limits(bytes.length, 64))).toEqual(sample);
      const err = expectError(() => decodePayload(bytes, encoding, limits(bytes.length - 1, 64)), ErrorCode.PayloadTooLarge);
      expect(err.message).toContain(`${bytes.length - 1}-byte limit`);
    });

    it.each([
      ["arrays", nestedArrays],
      ["objects", nestedObjects],
    ] as const)("accepts %s nested exactly to the default depth 64 and rejects 65", (_, nest) => {
      expect(() => decodePayload(nest(64, encoding), encoding)).not.toThrow();
      const err = expectError(() => decodePayload(nest(65, encoding), encoding), ErrorCode.PayloadTooDeep);
      expect(err.message).toContain("64-level limit");
      expect(err.message).toContain("maxDepth");
    });

    it("accepts exactly maxDepth and rejects one more when the limit is custom", () => {
      const value = { a: [{ b: [] }] }; // depth 4
      expect(decodePayload(encodePayload(value, encoding), encoding, limits(MiB, 4))).toEqual(value);
      const err = expectError(() => decodePayload(encodePayload(value, encoding), encoding, limits(MiB, 3)), ErrorCode.PayloadTooDeep);
      expect(err.message).toContain("3-level limit");
    });

    it("counts only containers as depth when strings contain brackets", () => {
      const value = { s: "[[[[{{{{\\\"[[[[", t: ["]]]]}}}}"] };
      expect(decodePayload(encodePayload(value, encoding), encoding, limits(MiB, 2))).toEqual(value);
    });

    it.each([
      ["arrays", nestedArrays],
      ["objects", nestedObjects],
    ] as const)("rejects %s nested 100000 deep as too deep when the default limit applies", (_, nest) => {
      expectError(() => decodePayload(nest(100_000, encoding), encoding), ErrorCode.PayloadTooDeep);
    });

    it("rejects every proper prefix as malformed when the payload is truncated", () => {
      const bytes = encodePayload({ a: [1, 2.5, "ü🚀"], b: { c: null } }, encoding);
      for (let n = 0; n < bytes.length; n++) expectError(() => decodePayload(bytes.subarray(0, n), encoding), ErrorCode.MalformedPayload);
    });

    it.each(malformed[encoding])("rejects the payload as malformed when it has %s", (_, bytes) => {
      const err = expectError(() => decodePayload(bytes, encoding), ErrorCode.MalformedPayload);
      expect(err.message).toMatch(encoding === "json" ? /JSON|UTF-8/ : /CBOR/);
    });

    it("keeps __proto__ as an own key and leaves Object.prototype unchanged when a payload sets it", () => {
      const bytes =
        encoding === "json"
          ? Buffer.from('{"__proto__": {"polluted": true}, "list": [{"__proto__": {"polluted": true}}]}')
          : bytesOf(0xa2, 0x69, "__proto__", 0xa1, 0x68, "polluted", 0xf5, 0x64, "list", 0x81, 0xa1, 0x69, "__proto__", 0xa1, 0x68, "polluted", 0xf5);
      const value = decodePayload(bytes, encoding) as Record<string, unknown>;
      expect(Object.prototype).not.toHaveProperty("polluted");
      expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
      expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
      expect(Object.getOwnPropertyDescriptor(value, "__proto__")?.value).toEqual({ polluted: true });
      expect(Object.keys(value)).toEqual(["__proto__", "list"]);
      const inner = (value["list"] as Record<string, unknown>[])[0]!;
      expect(Object.getPrototypeOf(inner)).toBe(Object.prototype);
      expect(Object.keys(inner)).toEqual(["__proto__"]);
    });

    it("decodes a date as its ISO string when the payload carries one", () => {
      const iso = "2024-02-29T12:34:56.789Z";
      const bytes =
        encoding === "json"
          ? encodePayload({ at: new Date(iso) }, encoding)
          : bytesOf(0xa2, 0x62, "at", 0xc0, 0x78, iso.length, iso, 0x62, "ep", 0xc1, 0x1a, 0x65, 0xe0, 0x7a, 0xd0);
      const value = decodePayload(bytes, encoding) as Record<string, unknown>;
      expect(value["at"]).toBe(iso);
      if (encoding === "cbor") expect(value["ep"]).toBe(new Date(0x65e07ad0 * 1000).toISOString());
    });
  });
});

describe("encodePayload", () => {
  describe.each(encodings)("%s", (encoding) => {
    it("keeps what JSON.stringify keeps when the value has dates, undefined and non-finite numbers", () => {
      const value = { d: new Date(0), u: undefined, f: () => 1, n: [NaN, Infinity, undefined], nested: { toJSON: () => "custom" } };
      expect(decodePayload(encodePayload(value, encoding), encoding)).toEqual({
        d: "1970-01-01T00:00:00.000Z",
        n: [null, null, null],
        nested: "custom",
      });
    });

    it.each([
      ["a BigInt", { n: 1n }],
      ["a cycle", (() => { const o: Record<string, unknown> = {}; o["self"] = o; return o; })()],
      ["a bare undefined", undefined],
      ["a bare function", () => 1],
    ])("throws MalformedPayload when the value holds %s", (_, value) => {
      const err = expectError(() => encodePayload(value, encoding), ErrorCode.MalformedPayload);
      expect(err.message).toContain("cannot be encoded");
    });

    it("keeps an own __proto__ key through a round trip when the value came from JSON.parse", () => {
      const value = JSON.parse('{"__proto__": {"polluted": true}}') as Record<string, unknown>;
      const back = decodePayload(encodePayload(value, encoding), encoding) as Record<string, unknown>;
      expect(Object.getOwnPropertyDescriptor(back, "__proto__")?.value).toEqual({ polluted: true });
      expect(Object.getPrototypeOf(back)).toBe(Object.prototype);
      expect(Object.prototype).not.toHaveProperty("polluted");
    });

    it("keeps earlier results intact when encoding again", () => {
      const first = encodePayload({ a: 1 }, encoding);
      const copy = Uint8Array.from(first);
      encodePayload({ b: "x".repeat(10_000) }, encoding);
      expect(first).toBeInstanceOf(Uint8Array);
      expect(Uint8Array.from(first)).toEqual(copy);
    });
  });
});

describe("encodingFromContentType", () => {
  describe.each(encodings)("%s", (encoding) => {
    it("returns the encoding when given the content type contentTypeOf produced", () => {
      expect(encodingFromContentType(contentTypeOf(encoding))).toBe(encoding);
    });

    it("ignores parameters, case and whitespace when the media type matches", () => {
      expect(encodingFromContentType(` ${contentTypeOf(encoding).toUpperCase()} ; charset=utf-8`)).toBe(encoding);
    });
  });

  it("returns json when the content type is missing or empty", () => {
    expect(encodingFromContentType(undefined)).toBe("json");
    expect(encodingFromContentType(null)).toBe("json");
    expect(encodingFromContentType("")).toBe("json");
  });

  it.each(["text/plain", "application/msgpack", "application/jsonx", "application/cbor-seq"])(
    "throws MalformedPayload naming the accepted types when the content type is %s",
    (contentType) => {
      const err = expectError(() => encodingFromContentType(contentType), ErrorCode.MalformedPayload);
      expect(err.message).toContain(`'${contentType}'`);
      expect(err.message).toContain("application/json");
      expect(err.message).toContain("application/cbor");
    },
  );

  it("shortens the echoed content type when it is very long", () => {
    const err = expectError(() => encodingFromContentType("x".repeat(10_000)), ErrorCode.MalformedPayload);
    expect(err.message.length).toBeLessThan(200);
  });
});

describe("resolveDecodeLimits", () => {
  it("fills in 1 MiB and depth 64 and freezes the result when no options are given", () => {
    const limits = resolveDecodeLimits();
    expect(limits).toEqual({ maxBytes: MiB, maxDepth: 64 });
    expect(Object.isFrozen(limits)).toBe(true);
  });

  it("keeps given limits when they are positive integers", () => {
    expect(resolveDecodeLimits({ maxDepth: 3 })).toEqual({ maxBytes: MiB, maxDepth: 3 });
  });

  it.each([0, -1, 1.5, NaN, Infinity])("throws BadRequest naming the limit when it is %s", (bad) => {
    const err = expectError(() => resolveDecodeLimits({ maxBytes: bad }), ErrorCode.BadRequest);
    expect(err.message).toContain("maxBytes");
    expectError(() => resolveDecodeLimits({ maxDepth: bad }), ErrorCode.BadRequest);
  });

  it("rejects every payload when a hand-built limit is NaN", () => {
    expectError(() => decodePayload(Buffer.from("1"), "json", { maxBytes: NaN, maxDepth: NaN }), ErrorCode.PayloadTooLarge);
    expectError(() => decodePayload(Buffer.from("[]"), "json", { maxBytes: 10, maxDepth: NaN }), ErrorCode.PayloadTooDeep);
    expectError(() => decodePayload(Uint8Array.of(0x80), "cbor", { maxBytes: 10, maxDepth: NaN }), ErrorCode.PayloadTooDeep);
  });
});

describe("decodeRecord", () => {
  it("returns the record when round-tripping through encodeRecord", () => {
    expect(decodeRecord(encodeRecord(sample))).toEqual(sample);
  });

  it("accepts depth 256 and rejects 257 when the default record limits apply", () => {
    expect(() => decodeRecord(nestedArrays(256, "cbor"))).not.toThrow();
    const err = expectError(() => decodeRecord(nestedArrays(257, "cbor")), ErrorCode.PayloadTooDeep);
    expect(err.message).toContain("256-level limit");
  });

  it("accepts records over 1 MiB when the default record limits apply", () => {
    expect(decodeRecord(payloadOfSize(2 * MiB, "cbor"))).toHaveLength(2 * MiB - 5);
  });

  it("uses the given limits when they are passed", () => {
    const bytes = encodeRecord(sample);
    const err = expectError(() => decodeRecord(bytes, resolveDecodeLimits({ maxBytes: 8 })), ErrorCode.PayloadTooLarge);
    expect(err.message).toContain("journal record is");
  });

  it("rejects records as malformed when they are truncated", () => {
    const bytes = encodeRecord(sample);
    expectError(() => decodeRecord(bytes.subarray(0, bytes.length - 1)), ErrorCode.MalformedPayload);
  });
});

describe("cbor-x", () => {
  it("decodes invalid UTF-8 leniently when used alone, which is why the codec checks text strings itself", () => {
    expect(new Decoder({ mapsAsObjects: true, useRecords: false }).decode(bytesOf(0x62, 0xc3, 0x28))).toBe("\ufffd(");
  });

  it("renames __proto__ keys when used alone, which is why the codec reads such payloads as Maps", () => {
    const value = new Decoder({ mapsAsObjects: true, useRecords: false }).decode(bytesOf(0xa1, 0x69, "__proto__", 0x01));
    expect(Object.keys(value)).toEqual(["__proto_"]);
  });
});

describe("journal record encoding", () => {
  it("keeps undefined fields and decodes what it encodes when the record is plain data", async () => {
    const { encodeRecord, decodeRecord } = await import("../../protocol/codec.js");
    const rec = { step: 1, snapshot: { context: { a: 1, b: undefined }, children: {} }, when: new Date(0) };
    expect(decodeRecord(encodeRecord(rec))).toEqual({ step: 1, snapshot: { context: { a: 1, b: undefined }, children: {} }, when: "1970-01-01T00:00:00.000Z" });
  });

  it("reads back records whether their data is plain or not: class instances, Maps, Dates, BigInts, odd constructors", async () => {
    const { encodeRecord, decodeRecord } = await import("../../protocol/codec.js");
    class Point {
      x = 1;
      y: number | undefined = undefined;
    }
    const nullProto = Object.assign(Object.create(null) as object, { a: 1 });
    const roundTrip = (v: unknown) => decodeRecord(encodeRecord(v));
    expect(roundTrip({ p: new Point(), big: 5n })).toStrictEqual({ p: { x: 1, y: undefined }, big: 5 });
    expect(roundTrip({ m: new Map([["k", 1]]) })).toStrictEqual({ m: {} });
    expect(roundTrip({ d: new Date(0), u: undefined })).toStrictEqual({ d: "1970-01-01T00:00:00.000Z", u: undefined });
    expect(roundTrip({ n: nullProto })).toStrictEqual({ n: { a: 1 } });
    expect(roundTrip({ odd: { constructor: Array, length: 2 } })).toStrictEqual({ odd: [undefined, undefined] });
    expect(roundTrip({ deep: [[{ u: undefined }]], big: (1n << 64n) - 1n, neg: -(1n << 63n) })).toStrictEqual({ deep: [[{ u: undefined }]], big: 2 ** 64, neg: -(2 ** 63) });
  });

  it("replaces lone surrogates, in values and keys, so the record stays readable", async () => {
    const { encodeRecord, decodeRecord } = await import("../../protocol/codec.js");
    expect(decodeRecord(encodeRecord({ s: "a\ud800b", ["k\udc00"]: ["\udfff"], long: `${"x".repeat(100)}\ud800` }))).toStrictEqual({ s: "a\ufffdb", ["k\ufffd"]: ["\ufffd"], long: `${"x".repeat(100)}\ufffd` });
  });

  it("goes through JSON for what CBOR-as-JSON cannot carry, and refuses what JSON cannot either", async () => {
    const { encodeRecord, decodeRecord } = await import("../../protocol/codec.js");
    expect(decodeRecord(encodeRecord({ m: new Map([[1, 2]]), x: Number.NaN }))).toEqual({ m: {}, x: null });
    expect(decodeRecord(encodeRecord({ small: 10n }))).toEqual({ small: 10 });
    expect(() => encodeRecord({ big: 2n ** 70n })).toThrow(/cannot be encoded/);
  });
});
