import { create, type JsonValue, toBinary } from "@bufbuild/protobuf";
import {
  type CanonicalMember,
  CanonicalMemberSchema,
  CanonicalNullSchema,
  type CanonicalValue,
  CanonicalValueSchema,
} from "../../gen/openexec/v1/canonical_json_pb.js";

// Portable on purpose (no Node-only imports): the approval signer uses it in browsers.

/** A value that has no canonical form (docs/CANONICAL_JSON.md, "Refused input"). */
export class CanonicalJsonError extends Error {
  override readonly name = "CanonicalJsonError";
}

/**
 * The canonical bytes of a JSON value: the protobuf binary encoding of its
 * CanonicalValue. Two parties that agree on the JSON value agree on these
 * bytes, whatever language or key order they started from.
 */
export function canonicalJsonBytes(value: JsonValue): Uint8Array {
  return toBinary(CanonicalValueSchema, toCanonicalValue(value));
}

function toCanonicalValue(value: JsonValue): CanonicalValue {
  switch (typeof value) {
    case "number":
      if (!Number.isFinite(value)) throw new CanonicalJsonError("numbers must be finite");
      // `value + 0` turns -0 into +0 and leaves every other double alone.
      return create(CanonicalValueSchema, { kind: { case: "numberValue", value: value + 0 } });
    case "string":
      return create(CanonicalValueSchema, { kind: { case: "stringValue", value: wellFormed(value) } });
    case "boolean":
      return create(CanonicalValueSchema, { kind: { case: "boolValue", value } });
    case "object":
      if (value === null) {
        return create(CanonicalValueSchema, {
          kind: { case: "nullValue", value: create(CanonicalNullSchema) },
        });
      }
      if (Array.isArray(value)) {
        return create(CanonicalValueSchema, {
          // Array.from, not map: holes in a sparse array become undefined and are refused.
          kind: { case: "arrayValue", value: { values: Array.from(value, (item) => toCanonicalValue(item)) } },
        });
      }
      if (!isPlainObject(value)) throw new CanonicalJsonError("objects must be plain JSON objects");
      return create(CanonicalValueSchema, {
        kind: { case: "objectValue", value: { members: canonicalMembers(value) } },
      });
    default:
      throw new CanonicalJsonError(`${typeof value} is not a JSON value`);
  }
}

function canonicalMembers(object: { readonly [key: string]: JsonValue }): CanonicalMember[] {
  const entries = Object.keys(object).map((key) => ({
    key: wellFormed(key),
    keyBytes: Buffer.from(key, "utf8"),
    value: object[key] as JsonValue,
  }));
  // Sort by the UTF-8 bytes of the key, not by UTF-16 code units: the two
  // orders differ for characters above U+FFFF, and other languages sort bytes.
  entries.sort((a, b) => Buffer.compare(a.keyBytes, b.keyBytes));
  return entries.map((entry) =>
    create(CanonicalMemberSchema, { key: entry.key, value: toCanonicalValue(entry.value) }),
  );
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
