import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { JsonSchema } from "./action.js";

/** At most this many issues are named in one answer; the rest are counted. */
const maxIssuesNamed = 3;

/**
 * The answer's message for a payload the schema refused, composed only from
 * what the action declared: the issue's kind and the schema's own bounds,
 * formats and field names. Nothing of the payload is quoted: not a value, not
 * an unknown field's name, not a map key (a path through a map shows `[*]`),
 * and not the validation library's own message, which may quote either.
 */
export function describeIssues(issues: readonly StandardSchemaV1.Issue[], schema: JsonSchema): string {
  const named = issues.slice(0, maxIssuesNamed).map((issue) => {
    const where = pathOf(issue, schema);
    const what = problemOf(issue as StandardSchemaV1.Issue & IssueFacts);
    return where === "" ? what : `${where}: ${what}`;
  });
  const more = issues.length - named.length;
  return more > 0 ? `${named.join("; ")} (and ${more} more)` : named.join("; ");
}

/**
 * The facts zod 4 puts on an issue beside Standard Schema's message and path.
 * Other libraries' issues lack them and are described generically.
 */
interface IssueFacts {
  readonly code?: unknown;
  readonly expected?: unknown;
  readonly origin?: unknown;
  readonly maximum?: unknown;
  readonly minimum?: unknown;
  readonly inclusive?: unknown;
  readonly format?: unknown;
  readonly divisor?: unknown;
  readonly values?: unknown;
}

function problemOf(issue: IssueFacts): string {
  switch (issue.code) {
    case "invalid_type":
      return typeof issue.expected === "string" ? `expected ${article(issue.expected)}` : "wrong type";
    case "unrecognized_keys":
      return "unexpected field";
    case "too_big":
      return bound("at most", "less than", issue.maximum, issue);
    case "too_small":
      return bound("at least", "more than", issue.minimum, issue);
    case "invalid_format":
      return typeof issue.format === "string" && /^[a-z0-9_]{1,32}$/.test(issue.format)
        ? issue.format === "regex"
          ? "does not match the required pattern"
          : `expected ${article(issue.format)}`
        : "wrong format";
    case "not_multiple_of":
      return typeof issue.divisor === "number" ? `expected a multiple of ${issue.divisor}` : "not an allowed multiple";
    case "invalid_value":
      return allowedValues(issue.values);
    case "invalid_union":
      return "matches none of the allowed forms";
    case "invalid_key":
      return "a key is not allowed";
    case "invalid_element":
      return "an element is not allowed";
    default:
      return "does not match the action's input schema";
  }
}

function bound(inclusiveWord: string, exclusiveWord: string, limit: unknown, issue: IssueFacts): string {
  if (typeof limit !== "number" && typeof limit !== "bigint") return "out of range";
  const word = issue.inclusive === false ? exclusiveWord : inclusiveWord;
  switch (issue.origin) {
    case "string":
      return `${word} ${limit} characters`;
    case "array":
    case "set":
      return `${word} ${limit} items`;
    case "object":
      return `${word} ${limit} fields`;
    default:
      return `${word} ${limit}`;
  }
}

/** The schema's allowed values (an enum or literal), when few and short enough to list. */
function allowedValues(values: unknown): string {
  if (!Array.isArray(values) || values.length === 0 || values.length > 8) return "not an allowed value";
  const shown = values.map((value) => JSON.stringify(value));
  if (shown.some((text) => text === undefined || text.length > 40)) return "not an allowed value";
  return `expected one of ${shown.join(", ")}`;
}

function article(word: string): string {
  return /^[aeiou]/.test(word) ? `an ${word}` : `a ${word}`;
}

/**
 * The issue's path, written with the schema's own names: a field the schema
 * declares is named; an array index is a position; anything else (a map key,
 * a name the schema does not know) is `[*]`, and the walk stops naming there.
 */
function pathOf(issue: StandardSchemaV1.Issue, root: JsonSchema): string {
  let out = "";
  let node: JsonValue | undefined = root;
  for (const raw of issue.path ?? []) {
    const segment = typeof raw === "object" && raw !== null ? raw.key : raw;
    const next: ReturnType<typeof childSchema> = node === undefined ? undefined : childSchema(node, segment, root);
    if (typeof segment === "number" && Number.isSafeInteger(segment)) {
      out += `[${segment}]`;
    } else if (typeof segment === "string" && next?.named === true) {
      out += /^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)
        ? out === ""
          ? segment
          : `.${segment}`
        : `[${JSON.stringify(segment)}]`;
    } else {
      out += "[*]";
    }
    node = next?.schema;
  }
  return out;
}

/** The schema a member lives under, and whether the schema names it (a declared property). */
function childSchema(
  node: JsonValue,
  segment: PropertyKey,
  root: JsonSchema,
): { readonly schema: JsonValue | undefined; readonly named: boolean } | undefined {
  const schema = resolve(node, root);
  if (schema === undefined) return undefined;
  if (typeof segment === "string") {
    const properties = schema.properties;
    if (isObject(properties) && Object.hasOwn(properties, segment)) return { schema: properties[segment], named: true };
    if (schema.additionalProperties !== undefined) return { schema: schema.additionalProperties, named: false };
  }
  if (typeof segment === "number") {
    const prefix = schema.prefixItems;
    if (Array.isArray(prefix) && segment < prefix.length) return { schema: prefix[segment], named: false };
    if (schema.items !== undefined) return { schema: schema.items, named: false };
  }
  for (const key of ["anyOf", "oneOf", "allOf"]) {
    const branches = schema[key];
    if (!Array.isArray(branches)) continue;
    for (const branch of branches) {
      const found = childSchema(branch, segment, root);
      if (found?.named === true) return found;
    }
  }
  return undefined;
}

/** Follows a local `$ref` (`#/$defs/name`), as the libraries write shared and recursive schemas. */
function resolve(node: JsonValue, root: JsonSchema): JsonObject | undefined {
  if (!isObject(node)) return undefined;
  const ref = node.$ref;
  if (typeof ref !== "string") return node;
  const match = /^#\/\$defs\/([^/]+)$/.exec(ref);
  const defs = root.$defs;
  if (match === null || !isObject(defs)) return undefined;
  const target = defs[match[1] as string];
  return isObject(target) ? target : undefined;
}

function isObject(value: JsonValue | undefined): value is JsonObject {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}
