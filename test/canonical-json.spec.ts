// The canonical JSON encoding (docs/CANONICAL_JSON.md) against its test
// vectors (test/vectors/canonical-json.json): the TypeScript encoder, an
// encoder written from the spec's byte-level rules, and Python's own protobuf
// runtime must all produce the same bytes.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { create, type JsonValue, toBinary } from "@bufbuild/protobuf";
import { type CanonicalValue, CanonicalValueSchema } from "../gen/openexec/v1/canonical_json_pb.js";
import { canonicalJsonDigest } from "../src/json/canonical-digest.js";
import { canonicalJsonBytes } from "../src/json/canonical-json.js";
import { decodeUtf8, JsonSyntaxError, type JsonSyntaxReason, parseStrictJson } from "../src/json/strict-json.js";
import { packageRoot as root } from "../src/version.js";

const vectorsPath = join(root, "test/vectors/canonical-json.json");
const protoFile = "openexec/v1/canonical_json.proto";
const pythonScript = join(root, "test/python/canonical_json_encode.py");
/** The nesting limit the vectors assume (docs/CANONICAL_JSON.md, "Nesting"). */
const maxDepth = 32;

/** An input is the UTF-8 of `json`, or raw bytes for what no JSON string can hold. */
interface Input {
  readonly name: string;
  readonly json?: string;
  readonly json_hex?: string;
}
interface ValidVector extends Input {
  readonly canonical_hex: string;
  readonly sha256: string;
}
interface InvalidVector extends Input {
  readonly reason: JsonSyntaxReason;
}
interface Vectors {
  readonly valid: readonly ValidVector[];
  readonly invalid: readonly InvalidVector[];
}

const vectors = JSON.parse(readFileSync(vectorsPath, "utf8")) as Vectors;

function inputBytes(vector: Input): Buffer {
  if (vector.json !== undefined) return Buffer.from(vector.json, "utf8");
  return Buffer.from(vector.json_hex ?? "", "hex");
}

/** Parses an input as the server does: strict UTF-8, then strict JSON. */
function parse(vector: Input): JsonValue {
  return parseStrictJson(decodeUtf8(inputBytes(vector)), { maxDepth });
}

function hexOf(name: string): string {
  const vector = vectors.valid.find((v) => v.name === name);
  assert.ok(vector, `no valid vector named ${name}`);
  return vector.canonical_hex;
}

describe("canonical JSON test vectors", () => {
  it("are well formed", () => {
    assert.ok(vectors.valid.length > 0 && vectors.invalid.length > 0);
    const names = [...vectors.valid, ...vectors.invalid].map((v) => v.name);
    assert.equal(new Set(names).size, names.length, "vector names are unique");
    for (const vector of [...vectors.valid, ...vectors.invalid]) {
      assert.ok((vector.json === undefined) !== (vector.json_hex === undefined), `${vector.name}: json xor json_hex`);
      // A lone surrogate in `json` would not survive UTF-8 encoding; such inputs belong in json_hex.
      if (vector.json !== undefined) assert.ok(vector.json.isWellFormed(), `${vector.name}: json is valid Unicode`);
    }
    for (const vector of vectors.valid) {
      assert.match(vector.canonical_hex, /^(?:[0-9a-f]{2})+$/, vector.name);
      const digest = createHash("sha256").update(Buffer.from(vector.canonical_hex, "hex")).digest("hex");
      assert.equal(vector.sha256, digest, `${vector.name}: sha256 is the SHA-256 of canonical_hex`);
    }
  });

  it("give the same bytes for the same value and different bytes for different values", () => {
    const sameBytes = [
      ["zero", "negative_zero", "negative_zero_fraction", "negative_zero_exponent", "underflow_to_zero"],
      ["zero", "negative_underflow_to_zero"],
      ["one", "one_fraction", "one_exponent", "one_other_forms"],
      ["one_hundred", "one_hundred_exponent", "one_hundred_exponent_plus"],
      ["one_tenth", "one_tenth_long_text"],
      ["max_double", "max_double_longer_text"],
      ["min_subnormal", "min_subnormal_rounded_up"],
      ["two_pow_53", "two_pow_53_plus_1"],
      ["key_order", "key_order_sorted_input"],
      ["key_order_utf8_not_utf16", "key_order_utf8_not_utf16_escaped"],
      ["string_e_acute_composed", "string_e_acute_escaped", "string_e_acute_escaped_uppercase_hex"],
      ["string_emoji", "string_emoji_escaped_pair", "string_emoji_escaped_pair_uppercase_hex"],
      ["string_escape_solidus", "string_plain_solidus"],
      ["whitespace_around_tokens", "whitespace_free"],
      ["empty_object", "utf8_byte_order_mark_ignored"],
    ];
    for (const [first, ...rest] of sameBytes) {
      for (const name of rest) assert.equal(hexOf(name), hexOf(first as string), `${name} = ${first}`);
    }
    const differentBytes = [
      ["string_e_acute_composed", "string_e_acute_decomposed"],
      ["three_tenths", "point_one_plus_point_two"],
      ["empty_object", "empty_array"],
      ["empty_object", "null"],
      ["empty_array", "null"],
      ["empty_string", "null"],
      ["zero", "false"],
      ["two_pow_53", "two_pow_53_plus_3_ties_to_even"],
    ];
    for (const [a, b] of differentBytes) assert.notEqual(hexOf(a as string), hexOf(b as string), `${a} ≠ ${b}`);
  });
});

describe("canonicalJsonBytes and canonicalJsonDigest", () => {
  for (const vector of vectors.valid) {
    it(`encode ${vector.name}`, () => {
      const value = parse(vector);
      assert.equal(Buffer.from(canonicalJsonBytes(value)).toString("hex"), vector.canonical_hex);
      assert.equal(canonicalJsonDigest(value).toString("hex"), vector.sha256);
    });
  }
});

describe("parseStrictJson refuses", () => {
  for (const vector of vectors.invalid) {
    it(`${vector.name} (${vector.reason})`, () => {
      assert.throws(
        () => parse(vector),
        (error: unknown) => error instanceof JsonSyntaxError && error.reason === vector.reason,
      );
    });
  }
});

describe("an encoder written from the spec's byte-level rules", () => {
  it("agrees with every valid vector", () => {
    for (const vector of vectors.valid) {
      assert.equal(specEncode(parse(vector)).toString("hex"), vector.canonical_hex, vector.name);
    }
  });
});

/** docs/CANONICAL_JSON.md section 4, without a protobuf library. */
function specEncode(value: JsonValue): Buffer {
  if (value === null) return field(1, Buffer.alloc(0));
  if (typeof value === "boolean") return Buffer.from([0x20, value ? 1 : 0]);
  if (typeof value === "number") {
    const bytes = Buffer.alloc(9);
    bytes[0] = 0x11;
    bytes.writeDoubleLE(value === 0 ? 0 : value, 1);
    return bytes;
  }
  if (typeof value === "string") return field(3, Buffer.from(value, "utf8"));
  if (Array.isArray(value)) return field(6, Buffer.concat(value.map((item) => field(1, specEncode(item)))));
  const members = Object.keys(value)
    .map((key) => ({ key: Buffer.from(key, "utf8"), value: value[key] as JsonValue }))
    .sort((a, b) => Buffer.compare(a.key, b.key))
    .map((m) =>
      field(1, Buffer.concat([m.key.length > 0 ? field(1, m.key) : Buffer.alloc(0), field(2, specEncode(m.value))])),
    );
  return field(5, Buffer.concat(members));
}

/** A length-delimited field: tag (number << 3 | 2), varint length, contents. */
function field(number: number, contents: Buffer): Buffer {
  const length: number[] = [];
  let n = contents.length;
  while (n >= 0x80) {
    length.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  length.push(n);
  return Buffer.concat([Buffer.from([(number << 3) | 2, ...length]), contents]);
}

interface PythonOutput {
  readonly protobuf: string;
  readonly valid: Record<string, { hex?: string; sha256?: string; error?: string }>;
  readonly invalid: Record<string, string | null>;
}

describe("protobuf-es, from the generated CanonicalValue schema", () => {
  /** The reference: build the message with protobuf-es and let it serialise. */
  function viaProtobufEs(value: JsonValue): CanonicalValue {
    if (value === null) return create(CanonicalValueSchema, { kind: { case: "nullValue", value: {} } });
    switch (typeof value) {
      case "number":
        return create(CanonicalValueSchema, { kind: { case: "numberValue", value: value + 0 } });
      case "string":
        return create(CanonicalValueSchema, { kind: { case: "stringValue", value } });
      case "boolean":
        return create(CanonicalValueSchema, { kind: { case: "boolValue", value } });
      default:
        if (Array.isArray(value)) {
          return create(CanonicalValueSchema, {
            kind: { case: "arrayValue", value: { values: value.map(viaProtobufEs) } },
          });
        }
        return create(CanonicalValueSchema, {
          kind: {
            case: "objectValue",
            value: {
              members: Object.keys(value)
                .sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
                .map((key) => ({ key, value: viaProtobufEs(value[key] as JsonValue) })),
            },
          },
        });
    }
  }

  it("serialises every valid vector to the bytes the direct encoder writes", () => {
    for (const vector of vectors.valid) {
      const value = parse(vector);
      assert.equal(
        Buffer.from(toBinary(CanonicalValueSchema, viaProtobufEs(value))).toString("hex"),
        Buffer.from(canonicalJsonBytes(value)).toString("hex"),
        vector.name,
      );
    }
  });
});

describe("Python's protobuf runtime", () => {
  it("encodes every valid vector to the same bytes, from the same .proto", (t: TestContext) => {
    const tools = findPythonTools();
    if (typeof tools === "string") {
      const message = `Python cross-check unavailable: ${tools}. Install the Debian packages protobuf-compiler and python3-protobuf.`;
      if (process.env.CI === "true") assert.fail(message);
      t.skip(message);
      return;
    }
    const outDir = mkdtempSync(join(tmpdir(), "openexec-canonical-json-"));
    try {
      run(tools.protoc, ["-I", join(root, "proto"), `--python_out=${outDir}`, join(root, "proto", protoFile)]);
      const output = JSON.parse(run(tools.python, [pythonScript, outDir, vectorsPath])) as PythonOutput;
      t.diagnostic(`python ${tools.python}, protobuf ${output.protobuf}, ${tools.protocVersion}`);
      for (const vector of vectors.valid) {
        assert.deepEqual(
          output.valid[vector.name],
          { hex: vector.canonical_hex, sha256: vector.sha256 },
          `Python's bytes for ${vector.name}`,
        );
      }
      // Python's json module, made strict as the spec says, refuses the same inputs for the same reasons.
      for (const vector of vectors.invalid) {
        assert.equal(output.invalid[vector.name], vector.reason, `Python's verdict on ${vector.name}`);
      }
    } finally {
      rmSync(outDir, { recursive: true, force: true });
    }
  });
});

/** Runs a command to completion and returns its stdout, or fails with its stderr. */
function run(command: string, args: readonly string[]): string {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 60_000 });
  if (result.error !== undefined || result.status !== 0) {
    assert.fail(
      `${command} ${args.join(" ")} failed (${result.error?.message ?? `exit ${result.status}`}):\n${result.stderr}`,
    );
  }
  return result.stdout;
}

function succeeds(command: string, args: readonly string[]): boolean {
  const result = spawnSync(command, args, { encoding: "utf8", timeout: 30_000 });
  return result.error === undefined && result.status === 0;
}

/**
 * protoc, and a python3 that can import google.protobuf, or why there are none.
 * /usr/bin/python3 comes first: Debian's python3-protobuf installs into the
 * system Python, and `python3` on PATH may be another interpreter (pyenv, a
 * virtualenv) that cannot see it. protoc and the runtime both come from Debian,
 * so the generated code matches the runtime's version.
 */
function findPythonTools(): { protoc: string; protocVersion: string; python: string } | string {
  const protoc = spawnSync("protoc", ["--version"], { encoding: "utf8", timeout: 30_000 });
  if (protoc.error !== undefined || protoc.status !== 0) return "protoc is not on PATH";
  const python = ["/usr/bin/python3", "python3"].find((candidate) =>
    succeeds(candidate, ["-c", "import google.protobuf"]),
  );
  if (python === undefined) return "neither /usr/bin/python3 nor python3 can import google.protobuf";
  return { protoc: "protoc", protocVersion: protoc.stdout.trim(), python };
}
