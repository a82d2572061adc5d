import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/** Why a JSON text was refused. */
export type JsonSyntaxReason = "body_malformed" | "body_too_deep" | "duplicate_key" | "reserved_key";

/**
 * Object keys OpenExec's API refuses (docs/CANONICAL_JSON.md, "Reserved keys"):
 * JavaScript JSON libraries, protobuf-es's Struct decoding among them, turn a
 * member named "__proto__" into a prototype instead of a key, so it could not
 * reach a handler, a receipt and every protocol's answer unchanged.
 */
export const reservedKeys: ReadonlySet<string> = new Set(["__proto__"]);

export class JsonSyntaxError extends Error {
  override readonly name = "JsonSyntaxError";
  constructor(
    readonly reason: JsonSyntaxReason,
    message: string,
    /** Offset in UTF-16 code units where the problem was found. */
    readonly position: number,
  ) {
    super(`${message} at offset ${position}`);
  }
}

export interface StrictJsonOptions {
  /** Deepest nesting of arrays and objects allowed; the outermost one is 1. */
  readonly maxDepth: number;
  /**
   * Refuse the keys in `reservedKeys` (reason reserved_key), as OpenExec's API
   * does for every request. The canonical encoding itself defines them, so the
   * default (false) parses them as docs/CANONICAL_JSON.md section 2 says.
   */
  readonly refuseReservedKeys?: boolean;
}

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** Decodes UTF-8 strictly (invalid byte sequences are an error, not U+FFFD). */
export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new JsonSyntaxError("body_malformed", "body is not valid UTF-8", 0);
  }
}

/**
 * Parses RFC 8259 JSON strictly, as the canonical payload encoding requires
 * (docs/CANONICAL_JSON.md): duplicate object keys, lone surrogates, numbers
 * that overflow a double and nesting deeper than `maxDepth` are all refused,
 * where JSON.parse would silently keep the last key or return Infinity.
 * The recursion depth is bounded by `maxDepth`, so hostile input cannot
 * exhaust the stack.
 */
export function parseStrictJson(text: string, options: StrictJsonOptions): JsonValue {
  const parser = new Parser(text, options.maxDepth, options.refuseReservedKeys === true);
  parser.skipWhitespace();
  const value = parser.parseValue(0);
  parser.skipWhitespace();
  if (parser.pos !== text.length) {
    parser.fail("body_malformed", "unexpected text after the JSON value");
  }
  return value;
}

const numberPattern = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

class Parser {
  pos = 0;

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
    private readonly refuseReservedKeys: boolean,
  ) {}

  fail(reason: JsonSyntaxReason, message: string): never {
    throw new JsonSyntaxError(reason, message, this.pos);
  }

  skipWhitespace(): void {
    const { text } = this;
    while (this.pos < text.length) {
      const c = text.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
      this.pos++;
    }
  }

  parseValue(depth: number): JsonValue {
    const c = this.text[this.pos];
    switch (c) {
      case "{":
        return this.parseObject(depth + 1);
      case "[":
        return this.parseArray(depth + 1);
      case '"':
        return this.parseString();
      case "t":
        return this.parseLiteral("true", true);
      case "f":
        return this.parseLiteral("false", false);
      case "n":
        return this.parseLiteral("null", null);
      case undefined:
        return this.fail("body_malformed", "unexpected end of JSON");
      default:
        return this.parseNumber();
    }
  }

  private enter(depth: number): void {
    if (depth > this.maxDepth) {
      this.fail("body_too_deep", `JSON nesting deeper than ${this.maxDepth}`);
    }
    this.pos++;
    this.skipWhitespace();
  }

  private parseObject(depth: number): JsonObject {
    this.enter(depth);
    const object: JsonObject = {};
    const seen = new Set<string>();
    if (this.text[this.pos] === "}") {
      this.pos++;
      return object;
    }
    for (;;) {
      if (this.text[this.pos] !== '"') this.fail("body_malformed", "expected a string key");
      const keyStart = this.pos;
      const key = this.parseString();
      if (seen.has(key)) {
        this.pos = keyStart;
        this.fail("duplicate_key", `duplicate object key ${JSON.stringify(key)}`);
      }
      seen.add(key);
      if (this.refuseReservedKeys && reservedKeys.has(key)) {
        this.pos = keyStart;
        this.fail("reserved_key", `object key ${JSON.stringify(key)} is reserved`);
      }
      this.skipWhitespace();
      if (this.text[this.pos] !== ":") this.fail("body_malformed", "expected ':'");
      this.pos++;
      this.skipWhitespace();
      const value = this.parseValue(depth);
      // defineProperty, not assignment: a key named "__proto__" must become
      // an own member, not replace the object's prototype.
      Object.defineProperty(object, key, { value, enumerable: true, writable: true, configurable: true });
      this.skipWhitespace();
      const next = this.text[this.pos];
      this.pos++;
      if (next === "}") return object;
      if (next !== ",") {
        this.pos--;
        this.fail("body_malformed", "expected ',' or '}'");
      }
      this.skipWhitespace();
    }
  }

  private parseArray(depth: number): JsonValue[] {
    this.enter(depth);
    const array: JsonValue[] = [];
    if (this.text[this.pos] === "]") {
      this.pos++;
      return array;
    }
    for (;;) {
      array.push(this.parseValue(depth));
      this.skipWhitespace();
      const next = this.text[this.pos];
      this.pos++;
      if (next === "]") return array;
      if (next !== ",") {
        this.pos--;
        this.fail("body_malformed", "expected ',' or ']'");
      }
      this.skipWhitespace();
    }
  }

  private parseLiteral<T extends JsonValue>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail("body_malformed", "unexpected token");
    this.pos += word.length;
    return value;
  }

  private parseNumber(): number {
    numberPattern.lastIndex = this.pos;
    const match = numberPattern.exec(this.text);
    if (match === null) this.fail("body_malformed", "unexpected token");
    const value = Number(match[0]);
    if (!Number.isFinite(value)) this.fail("body_malformed", "number out of the range of a double");
    this.pos += match[0].length;
    return value;
  }

  private parseString(): string {
    const { text } = this;
    this.pos++; // opening quote
    let out = "";
    let chunkStart = this.pos;
    for (;;) {
      const c = text.charCodeAt(this.pos);
      if (Number.isNaN(c)) this.fail("body_malformed", "unterminated string");
      if (c === 0x22) break;
      if (c < 0x20) this.fail("body_malformed", "control character in string");
      if (c === 0x5c) {
        out += text.slice(chunkStart, this.pos);
        out += this.parseEscape();
        chunkStart = this.pos;
        continue;
      }
      this.pos++;
    }
    out += text.slice(chunkStart, this.pos);
    this.pos++; // closing quote
    if (!out.isWellFormed()) {
      this.fail("body_malformed", "string holds a lone surrogate (not valid Unicode)");
    }
    return out;
  }

  private parseEscape(): string {
    const e = this.text[this.pos + 1];
    this.pos += 2;
    switch (e) {
      case '"':
        return '"';
      case "\\":
        return "\\";
      case "/":
        return "/";
      case "b":
        return "\b";
      case "f":
        return "\f";
      case "n":
        return "\n";
      case "r":
        return "\r";
      case "t":
        return "\t";
      case "u": {
        const hex = this.text.slice(this.pos, this.pos + 4);
        if (!/^[0-9a-fA-F]{4}$/.test(hex)) this.fail("body_malformed", "bad \\u escape");
        this.pos += 4;
        return String.fromCharCode(Number.parseInt(hex, 16));
      }
      default:
        this.pos -= 2;
        return this.fail("body_malformed", "bad escape");
    }
  }
}

/**
 * True when a value nests arrays and objects deeper than `maxDepth` (`{}` and
 * `[]` are depth 1). Iterative, and it stops as soon as the limit is passed, so
 * neither a deep value nor a cyclic one (from a handler) can hang or overflow.
 */
export function exceedsJsonDepth(value: JsonValue, maxDepth: number): boolean {
  const stack: Array<[JsonValue, number]> = [[value, 0]];
  for (let item = stack.pop(); item !== undefined; item = stack.pop()) {
    const [v, d] = item;
    if (v === null || typeof v !== "object") continue;
    const depth = d + 1;
    if (depth > maxDepth) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth]);
  }
  return false;
}

/**
 * True when an object anywhere in a (depth-checked) value has an own key from
 * `reservedKeys`: one no RPC encoding can carry, so a handler's result holding
 * it would be answered without it and fail its own receipt.
 */
export function hasReservedKey(value: JsonValue): boolean {
  const stack: JsonValue[] = [value];
  for (let v = stack.pop(); v !== undefined; v = stack.pop()) {
    if (v === null || typeof v !== "object") continue;
    if (!Array.isArray(v) && Object.keys(v).some((key) => reservedKeys.has(key))) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push(child);
  }
  return false;
}
