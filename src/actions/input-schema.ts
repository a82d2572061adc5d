import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { StandardJSONSchemaV1, StandardSchemaV1 } from "@standard-schema/spec";
import type { JsonSchema } from "./action.js";

/**
 * A schema an action declares its payload (or result) with: any library that
 * implements both Standard Schema (validation) and Standard JSON Schema
 * (publication), such as zod 4.2 and later, Valibot or ArkType. OpenExec
 * validates with the first and publishes the second; it never compiles
 * either into code.
 */
export type ActionSchema<Input = unknown, Output = Input> = StandardSchemaV1<Input, Output> &
  StandardJSONSchemaV1<Input, Output>;

/** Why a declared schema cannot serve: thrown by defineAction, before any server starts. */
export class ActionDefinitionError extends Error {
  override readonly name = "ActionDefinitionError";
}

/**
 * The JSON Schema (2020-12) a schema publishes for what callers send. Fails
 * closed when the schema would let an unknown field through silently: every
 * object in it must say what other members it takes (`additionalProperties`:
 * false for a fixed set of fields, z.strictObject; a schema for maps,
 * z.record or z.looseObject). A payload's top level must be an object.
 */
export function publishedSchema(action: string, role: "input" | "output", schema: StandardJSONSchemaV1): JsonSchema {
  let document: Record<string, unknown>;
  try {
    const converter = schema["~standard"].jsonSchema;
    document =
      role === "input" ? converter.input({ target: "draft-2020-12" }) : converter.output({ target: "draft-2020-12" });
  } catch (error) {
    throw new ActionDefinitionError(
      `action "${action}": its ${role} schema has no JSON Schema form (${error instanceof Error ? error.message : String(error)})`,
    );
  }
  // A plain JSON value from here on: the catalogue serves it as it is.
  const json = JSON.parse(JSON.stringify(document)) as JsonObject;
  if (role === "input" && json.type !== "object") {
    throw new ActionDefinitionError(`action "${action}": its input schema must describe a JSON object`);
  }
  const open = openObjectPath(json, "$");
  if (open !== undefined) {
    throw new ActionDefinitionError(
      `action "${action}": its ${role} schema lets unknown fields through at ${open}; declare objects strict ` +
        "(z.strictObject) or say what other members may be (z.record, z.looseObject)",
    );
  }
  return json;
}

/** The first object schema (by JSON path) that does not declare `additionalProperties`, if any. */
function openObjectPath(node: JsonValue, path: string): string | undefined {
  if (node === null || typeof node !== "object") return undefined;
  if (Array.isArray(node)) {
    for (const [i, item] of node.entries()) {
      const open = openObjectPath(item, `${path}[${i}]`);
      if (open !== undefined) return open;
    }
    return undefined;
  }
  const describesObject = node.type === "object" || (Array.isArray(node.type) && node.type.includes("object"));
  if (describesObject && node.additionalProperties === undefined) return path;
  for (const [key, value] of Object.entries(node)) {
    // `properties` and `$defs` map names to schemas; everything else nests schemas directly.
    const open = openObjectPath(value, `${path}.${key}`);
    if (open !== undefined) return open;
  }
  return undefined;
}
