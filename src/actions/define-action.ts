import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { StandardSchemaV1 } from "@standard-schema/spec";
import {
  type Action,
  type ActionEffect,
  type ActionEffects,
  ActionInputError,
  actionTimeoutMaxMs,
  type ExecutionContext,
  isValidActionName,
} from "./action.js";
import { describeIssues } from "./input-issues.js";
import { ActionDefinitionError, type ActionSchema, publishedSchema } from "./input-schema.js";
// For its side effect: zod never compiles validators in this process.
import "./zod.js";

/**
 * A change to the ledger's own state that a handler asks for instead of a
 * plain result, committed in the execution's transaction (so applied exactly
 * once). Made only by its factories.
 */
export class LedgerEffect {
  readonly #effect: Exclude<ActionEffect, { kind: "result" }>;

  private constructor(effect: Exclude<ActionEffect, { kind: "result" }>) {
    this.#effect = effect;
  }

  /** Adds `delta` (a safe integer) to the tenant's counter `key`; the result is {"key": key, "value": new total}. */
  static counterAdd(key: string, delta: number): LedgerEffect {
    return new LedgerEffect({ kind: "counter_add", key, delta });
  }

  /** @internal */
  static effectOf(value: LedgerEffect): ActionEffect {
    return value.#effect;
  }
}

/** What an action declares: everything OpenExec needs to validate, run, time-limit and publish it. */
export interface ActionDefinition<
  Schema extends ActionSchema<Record<string, unknown>, unknown>,
  Result extends JsonValue,
> {
  /** Lower-case dotted words, e.g. "ticket.create"; at most 64 characters. */
  readonly name: string;
  /** One line, shown in /health, GET /actions and `serve --help`. */
  readonly summary: string;
  /** "ledger" (computes only) or "external" (acts on the world): see docs/ACTIONS.md. */
  readonly effects: ActionEffects;
  /** The payload's schema: validated before anything is recorded, and published as JSON Schema. */
  readonly input: Schema;
  /** The result's schema, when declared: published, and every result is checked against it. */
  readonly output?: ActionSchema<Result, unknown>;
  /** The handler's time limit in ms (1 to 3,600,000); OPENEXEC_HANDLER_TIMEOUT_MS when absent. */
  readonly timeoutMs?: number;
  /**
   * The handler: the validated input and the execution's context in, a JSON
   * result (or a LedgerEffect) out. A throw records the execution as failed
   * (`handler_error`); it is never run again for the same nonce.
   */
  run(
    input: StandardSchemaV1.InferOutput<Schema>,
    context: ExecutionContext,
  ): NoInfer<Result> | LedgerEffect | Promise<NoInfer<Result> | LedgerEffect>;
}

/** A result that does not match the action's declared output schema: recorded as failed, `result_invalid`. */
export class ResultSchemaError extends Error {
  override readonly name = "ResultSchemaError";
}

/**
 * Defines an action from a schema. Checks the definition at once (name,
 * time limit, schemas that publish as JSON Schema and refuse unknown fields),
 * so a mistake stops the operator's program before any server starts.
 */
export function defineAction<
  Schema extends ActionSchema<Record<string, unknown>, unknown>,
  Result extends JsonValue = JsonValue,
>(definition: ActionDefinition<Schema, Result>): Action<StandardSchemaV1.InferOutput<Schema>> {
  const { name, summary, effects, input, output, timeoutMs } = definition;
  if (typeof name !== "string" || !isValidActionName(name)) {
    throw new ActionDefinitionError(`invalid action name ${JSON.stringify(name)}: lower-case dotted words, at most 64`);
  }
  if (typeof summary !== "string" || summary.length === 0 || summary.length > 200 || /[\r\n]/.test(summary)) {
    throw new ActionDefinitionError(`action "${name}": summary must be one line of 1-200 characters`);
  }
  if (effects !== "ledger" && effects !== "external") {
    throw new ActionDefinitionError(`action "${name}": effects must be "ledger" or "external"`);
  }
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 1 && timeoutMs <= actionTimeoutMaxMs)) {
    throw new ActionDefinitionError(`action "${name}": timeoutMs must be an integer from 1 to ${actionTimeoutMaxMs}`);
  }
  const inputSchema = publishedSchema(name, "input", input);
  const outputSchema = output === undefined ? undefined : publishedSchema(name, "output", output);
  const run = definition.run;
  return {
    name,
    summary,
    effects,
    inputSchema,
    ...(outputSchema === undefined ? {} : { outputSchema }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    parseInput(payload) {
      const checked = input["~standard"].validate(payload);
      return checked instanceof Promise
        ? checked.then((result) => inputOf(result, inputSchema))
        : inputOf(checked, inputSchema);
    },
    async run(value, context) {
      const returned = await run(value, context);
      if (returned instanceof LedgerEffect) return LedgerEffect.effectOf(returned);
      if (output !== undefined) {
        const checked = await output["~standard"].validate(returned);
        if (checked.issues !== undefined) {
          throw new ResultSchemaError(`result does not match the output schema of "${name}"`);
        }
      }
      return { kind: "result", result: returned };
    },
  };
}

function inputOf<T>(result: StandardSchemaV1.Result<T>, schema: JsonObject): T {
  if (result.issues !== undefined) throw ActionInputError.fromSchema(describeIssues(result.issues, schema));
  return result.value;
}
