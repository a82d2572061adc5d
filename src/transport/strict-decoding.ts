import {
  type DescField,
  type DescMessage,
  fromJson,
  type JsonObject,
  type JsonValue,
  ScalarType,
} from "@bufbuild/protobuf";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import type { ConnectRouterOptions } from "@connectrpc/connect";
import { rejectionToConnectError } from "../api/connect-errors.js";
import { Rejection, type RejectionReason } from "../errors/reason.js";
import { decodeCanonicalBase64 } from "../json/base64.js";
import { decodeUtf8, JsonSyntaxError, parseStrictJson, reservedKeys } from "../json/strict-json.js";

/**
 * How every RPC request message is decoded, on every protocol (Connect,
 * gRPC, gRPC-web; JSON and binary; compressed or not; Connect GET): with the
 * same rules as the REST paths, so that one body means one thing everywhere.
 *
 * JSON (a custom text decoder, which connect-es calls with the bytes of each
 * message after unframing and decompressing it): strict UTF-8, strict RFC
 * 8259 JSON (docs/CANONICAL_JSON.md: no duplicate keys, lone surrogates or
 * numbers beyond a double), no reserved key ("__proto__"), nesting within the
 * limit, and no field the schema does not know. A refusal is a ConnectError
 * with its reason, which connect-es answers as it is. A `bytes` field that is
 * not canonical base64 is read as the one byte 0xFF, which no message decodes
 * from: a changed approval_artifact is then refused as approval_malformed, as
 * over REST.
 *
 * Binary: protobuf-es offers no hook, so connect-adapter.ts hands each unary
 * request message to `binaryRefusal` before connect-es decodes it.
 */
export function strictJsonOptions(
  input: DescMessage,
  maxJsonDepth: number,
): NonNullable<ConnectRouterOptions["jsonOptions"]> {
  const options = {
    ignoreUnknownFields: false,
    textDecoder: { decode: (bytes?: Uint8Array) => checkedJsonText(input, bytes ?? new Uint8Array(0), maxJsonDepth) },
  };
  // connect-es reads textDecoder from the JSON options (JsonSerializationOptions), which the router's type omits.
  return options as NonNullable<ConnectRouterOptions["jsonOptions"]>;
}

/**
 * Why a binary message must be refused although protobuf-es would decode it:
 * a known field with another wire type (read as something else), a string map
 * key that is reserved (protobuf-es would make it a prototype and drop it), a
 * google.protobuf.Value number that is NaN or infinite (JSON has none).
 * Undefined: nothing to refuse here (a message protobuf-es cannot decode at
 * all is refused by connect-adapter.ts when it fails).
 */
export function binaryRefusal(input: DescMessage, bytes: Uint8Array): Rejection | undefined {
  try {
    checkBinary(input, bytes, 0);
    return undefined;
  } catch (error) {
    if (error instanceof Rejection) return error;
    // Truncated or otherwise undecodable: protobuf-es fails on it too.
    return undefined;
  }
}

function checkedJsonText(input: DescMessage, bytes: Uint8Array, maxJsonDepth: number): string {
  let text: string;
  let value: JsonValue;
  try {
    text = decodeUtf8(bytes);
    // As on REST: the request object wraps a payload (limit maxJsonDepth) or a
    // result (one deeper); the executor and the verifier hold each to its own limit.
    value = parseStrictJson(text, { maxDepth: maxJsonDepth + 2, refuseReservedKeys: true });
  } catch (error) {
    if (error instanceof JsonSyntaxError) throw refusal(error.reason, `invalid JSON: ${error.message}`);
    throw error;
  }
  const wrongType = executeFieldOfWrongType(input, value);
  if (wrongType !== undefined) throw refusal(wrongType, `${wrongType.replace("_invalid", "")} has the wrong type`);
  const replaced = replaceNonCanonicalBytes(input, value);
  try {
    fromJson(input, value, { ignoreUnknownFields: false });
  } catch (error) {
    const field = /cannot decode field ([\w.]+) from JSON/.exec(error instanceof Error ? error.message : "")?.[1];
    throw refusal(fieldReasons[field ?? ""] ?? "field_invalid", schemaProblem(input, error));
  }
  return replaced ? JSON.stringify(value) : text;
}

/**
 * An ExecuteRequest field whose JSON type is wrong, with the reason REST gives
 * it (protobuf-es does not always name the field, e.g. for a Struct).
 */
function executeFieldOfWrongType(input: DescMessage, value: JsonValue): RejectionReason | undefined {
  if (input.typeName !== "openexec.v1.ExecuteRequest" || !isObject(value)) return undefined;
  const { action, nonce, payload } = value;
  if (action !== undefined && action !== null && typeof action !== "string") return "action_invalid";
  if (nonce !== undefined && nonce !== null && typeof nonce !== "string") return "nonce_invalid";
  if (payload !== undefined && payload !== null && (typeof payload !== "object" || Array.isArray(payload))) {
    return "payload_invalid";
  }
  return undefined;
}

/** Fields whose wrong type has its own reason on REST: the same reason here, so that one body means one thing. */
const fieldReasons: Readonly<Record<string, RejectionReason>> = {
  "openexec.v1.ExecuteRequest.action": "action_invalid",
  "openexec.v1.ExecuteRequest.nonce": "nonce_invalid",
  "openexec.v1.ExecuteRequest.payload": "payload_invalid",
};

function refusal(reason: RejectionReason, message: string) {
  return rejectionToConnectError(new Rejection(reason, message));
}

/** protobuf-es's message names the field but may quote request values: keep the name only. */
function schemaProblem(input: DescMessage, error: unknown): string {
  const message = error instanceof Error ? error.message : "";
  const unknown = /key "([^"]{0,64})" is unknown/.exec(message);
  if (unknown !== null) return `unknown field ${JSON.stringify(unknown[1])} in ${input.typeName}`;
  const field = /cannot decode field ([\w.]+) from JSON/.exec(message);
  if (field !== null) return `field ${field[1]} has the wrong type or value`;
  return `the request is not a valid ${input.typeName}`;
}

/** 0xFF: field 31 with the invalid wire type 7, so no message decodes from it. */
const undecodableBytes = "/w==";

/** Replaces every `bytes` value that is not canonical base64 (see base64.ts); true if any was. */
function replaceNonCanonicalBytes(desc: DescMessage, json: JsonValue): boolean {
  if (!isObject(json)) return false;
  let replaced = false;
  for (const field of desc.fields) {
    const name = Object.hasOwn(json, field.jsonName) ? field.jsonName : field.name;
    const value = json[name];
    if (value === undefined || value === null) continue;
    if (field.fieldKind === "scalar" && field.scalar === ScalarType.BYTES) {
      if (!(typeof value === "string" && decodeCanonicalBase64(value) !== undefined)) {
        json[name] = undecodableBytes;
        replaced = true;
      }
    } else if (field.fieldKind === "message" && !isWellKnown(field.message)) {
      replaced = replaceNonCanonicalBytes(field.message, value) || replaced;
    } else if (field.fieldKind === "list" && field.listKind === "message" && !isWellKnown(field.message)) {
      if (Array.isArray(value))
        for (const item of value) replaced = replaceNonCanonicalBytes(field.message, item) || replaced;
    }
  }
  return replaced;
}

function isWellKnown(desc: DescMessage): boolean {
  return desc.typeName.startsWith("google.protobuf.");
}

function isObject(value: JsonValue): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

/** Deeper than any message this server accepts; bounds the recursion on hostile input. */
const maxMessageDepth = 300;

function checkBinary(desc: DescMessage, bytes: Uint8Array, depth: number): void {
  if (depth > maxMessageDepth) throw new Rejection("body_too_deep", "messages nest too deeply");
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    const field = fieldOf(desc, number);
    if (field === undefined) {
      reader.skip(wireType, number);
      continue;
    }
    if (!wireTypeFits(field, wireType)) {
      throw new Rejection("body_malformed", `field ${field.parent.typeName}.${field.name} has the wrong wire type`);
    }
    if (wireType !== WireType.LengthDelimited) {
      if (desc.typeName === "google.protobuf.Value" && field.name === "number_value") {
        if (!Number.isFinite(reader.double())) {
          throw new Rejection("body_malformed", "a google.protobuf.Value number must be finite (JSON has no NaN)");
        }
        continue;
      }
      reader.skip(wireType, number);
      continue;
    }
    const value = reader.bytes();
    switch (field.fieldKind) {
      case "message":
        checkBinary(field.message, value, depth + 1);
        break;
      case "list":
        if (field.listKind === "message") checkBinary(field.message, value, depth + 1);
        break;
      case "map":
        checkMapEntry(field, value, depth + 1);
        break;
    }
  }
}

function checkMapEntry(field: DescField & { fieldKind: "map" }, bytes: Uint8Array, depth: number): void {
  const reader = new BinaryReader(bytes);
  while (reader.pos < reader.len) {
    const [number, wireType] = reader.tag();
    if (number === 1) {
      if (wireType !== scalarWireType(field.mapKey))
        throw new Rejection("body_malformed", "a map key has the wrong wire type");
      if (field.mapKey === ScalarType.STRING) {
        const key = reader.string();
        if (reservedKeys.has(key)) throw new Rejection("reserved_key", `map key ${JSON.stringify(key)} is reserved`);
      } else {
        reader.skip(wireType, number);
      }
    } else if (number === 2 && field.mapKind === "message") {
      if (wireType !== WireType.LengthDelimited)
        throw new Rejection("body_malformed", "a map value has the wrong wire type");
      checkBinary(field.message, reader.bytes(), depth);
    } else {
      reader.skip(wireType, number);
    }
  }
}

const fieldsByNumber = new WeakMap<DescMessage, Map<number, DescField>>();

function fieldOf(desc: DescMessage, number: number): DescField | undefined {
  let fields = fieldsByNumber.get(desc);
  if (fields === undefined) {
    fields = new Map(desc.fields.map((f) => [f.number, f]));
    fieldsByNumber.set(desc, fields);
  }
  return fields.get(number);
}

function wireTypeFits(field: DescField, wireType: WireType): boolean {
  switch (field.fieldKind) {
    case "scalar":
      return wireType === scalarWireType(field.scalar);
    case "enum":
      return wireType === WireType.Varint;
    case "message":
      return wireType === (field.delimitedEncoding ? WireType.StartGroup : WireType.LengthDelimited);
    case "map":
      return wireType === WireType.LengthDelimited;
    case "list":
      switch (field.listKind) {
        case "message":
          return wireType === (field.delimitedEncoding ? WireType.StartGroup : WireType.LengthDelimited);
        case "enum":
          return wireType === WireType.Varint || wireType === WireType.LengthDelimited;
        case "scalar":
          // Packed or not, whatever the field declares: parsers must accept both.
          return wireType === scalarWireType(field.scalar) || wireType === WireType.LengthDelimited;
      }
  }
}

function scalarWireType(scalar: ScalarType): WireType {
  switch (scalar) {
    case ScalarType.STRING:
    case ScalarType.BYTES:
      return WireType.LengthDelimited;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      return WireType.Bit64;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      return WireType.Bit32;
    default:
      return WireType.Varint;
  }
}
