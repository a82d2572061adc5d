import type { JsonValue } from "@bufbuild/protobuf";

// Portable on purpose (no Node-only imports): the approval signer uses it in browsers.

/** A value that has no canonical form (docs/CANONICAL_JSON.md, "Refused input"). */
export class CanonicalJsonError extends Error {
  override readonly name = "CanonicalJsonError";
}

/**
 * The canonical bytes of a JSON value: the protobuf binary encoding of its
 * openexec.v1.CanonicalValue (proto/openexec/v1/canonical_json.proto). Two
 * parties that agree on the JSON value agree on these bytes, whatever
 * language or key order they started from.
 *
 * Written directly rather than through protobuf-es reflection: this runs
 * three times per execution, and the tests hold it byte-for-byte to the
 * vectors, to protobuf-es's own encoding of the schema, and to Python's.
 */
export function canonicalJsonBytes(value: JsonValue): Uint8Array {
  return encodeValue(value);
}

/** Field tags of CanonicalValue's oneof (field number << 3 | wire type). */
const tag = {
  null: 0x0a, // 1, length-delimited (an empty CanonicalNull)
  number: 0x11, // 2, 64-bit
  string: 0x1a, // 3, length-delimited
  bool: 0x20, // 4, varint
  object: 0x2a, // 5, length-delimited
  array: 0x32, // 6, length-delimited
} as const;
/** CanonicalMember.key (1) and .value (2); CanonicalObject.members (1); CanonicalArray.values (1). */
const memberKeyTag = 0x0a;
const memberValueTag = 0x12;
const repeatedTag = 0x0a;

const utf8 = new TextEncoder();
const nullBytes = Uint8Array.of(tag.null, 0);
const trueBytes = Uint8Array.of(tag.bool, 1);
const falseBytes = Uint8Array.of(tag.bool, 0);

function encodeValue(value: JsonValue): Uint8Array {
  switch (typeof value) {
    case "number": {
      if (!Number.isFinite(value)) throw new CanonicalJsonError("numbers must be finite");
      const out = new Uint8Array(9);
      out[0] = tag.number;
      // `value + 0` turns -0 into +0 and leaves every other double alone.
      new DataView(out.buffer).setFloat64(1, value + 0, true);
      return out;
    }
    case "string":
      return lengthDelimited(tag.string, [utf8.encode(wellFormed(value))]);
    case "boolean":
      return value ? trueBytes : falseBytes;
    case "object":
      if (value === null) return nullBytes;
      if (Array.isArray(value)) {
        // Array.from, not map: holes in a sparse array become undefined and are refused.
        return lengthDelimited(
          tag.array,
          Array.from(value, (item) => lengthDelimited(repeatedTag, [encodeValue(item)])),
        );
      }
      if (!isPlainObject(value)) throw new CanonicalJsonError("objects must be plain JSON objects");
      return lengthDelimited(tag.object, encodeMembers(value));
    default:
      throw new CanonicalJsonError(`${typeof value} is not a JSON value`);
  }
}

function encodeMembers(object: { readonly [key: string]: JsonValue }): Uint8Array[] {
  const members = Object.keys(object).map((key) => ({ key: utf8.encode(wellFormed(key)), value: object[key] }));
  // By the UTF-8 bytes of the key, not by UTF-16 code units: the two orders
  // differ for characters above U+FFFF, and other languages sort bytes.
  members.sort((a, b) => compareBytes(a.key, b.key));
  return members.map(({ key, value }) => {
    const parts: Uint8Array[] = [];
    // proto3 writes no empty string: the member with key "" has no key field.
    if (key.length > 0) parts.push(lengthDelimited(memberKeyTag, [key]));
    parts.push(lengthDelimited(memberValueTag, [encodeValue(value as JsonValue)]));
    return lengthDelimited(repeatedTag, parts);
  });
}

/** tag, varint(total length), then the parts. */
function lengthDelimited(fieldTag: number, parts: readonly Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const prefix = varintSize(length);
  const out = new Uint8Array(1 + prefix + length);
  out[0] = fieldTag;
  let offset = writeVarint(out, 1, length);
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

function varintSize(value: number): number {
  let size = 1;
  for (let v = value; v >= 0x80; v = Math.floor(v / 128)) size++;
  return size;
}

function writeVarint(out: Uint8Array, start: number, value: number): number {
  let offset = start;
  let v = value;
  while (v >= 0x80) {
    out[offset++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  out[offset++] = v;
  return offset;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

function wellFormed(text: string): string {
  if (!text.isWellFormed()) {
    throw new CanonicalJsonError("strings must be valid Unicode (no lone surrogates)");
  }
  return text;
}

function isPlainObject(value: object): boolean {
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}
