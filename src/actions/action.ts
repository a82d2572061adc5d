import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * What a handler may know about the execution it serves. Handlers are
 * deterministic: they read the time and identity from here, never from the
 * clock or a random source, so a replay can be explained from the ledger.
 */
export interface ExecutionContext {
  /**
   * The execution's id (a UUIDv7), the same in its receipt. An external
   * action passes it to the system it acts on as that system's idempotency
   * key: OpenExec runs a handler at most once per nonce, and the key makes
   * the far side apply its effect at most once as well (docs/ACTIONS.md).
   */
  readonly executionId: string;
  readonly nonce: string;
  readonly tenantId: string;
  /** Fixed for the execution: the moment its nonce was reserved. */
  readonly logicalTime: Date;
  /**
   * Aborted when the handler's time limit passes, the server stops, or this
   * process loses the execution's lease (another replica has recorded it as
   * interrupted). An external action checks it right before its effect, and
   * passes it on to what it calls (fetch, database drivers), so that a
   * paused or partitioned replica does not act for an execution it no longer
   * owns.
   */
  readonly signal: AbortSignal;
}

/**
 * What a handler asks the ledger to commit, as data. The ledger applies the
 * effect in the same transaction that records the execution as finished, so a
 * replay or a duplicate can never apply it twice. The set is closed on
 * purpose: new kinds of state are added here and in the recorder
 * (src/ledger/recorder.ts), not improvised by handlers.
 */
export type ActionEffect =
  /** A plain result, nothing else to commit. */
  | { readonly kind: "result"; readonly result: JsonValue }
  /** Add `delta` to the tenant's integer counter `key`; the result is {"key": key, "value": new total}. */
  | { readonly kind: "counter_add"; readonly key: string; readonly delta: number };

/**
 * Where a handler's effects land. "ledger": every effect of the handler is
 * what it returns (it computes, and touches nothing outside); the executor
 * may then run it before the reservation and commit nonce, effect and receipt
 * in one transaction. "external": it acts on the world (files, networks,
 * devices); the nonce is durably reserved before it runs, and a crash mid-run
 * leaves the execution interrupted, never re-run.
 */
export type ActionEffects = "ledger" | "external";

/**
 * A string fixed in the source: a literal, or a template of literals and
 * constants. Anything computed at run time (a payload key, a value,
 * `JSON.stringify(...)`) has the type `string` or `${string}` and is refused
 * by the compiler.
 */
export type FixedText<M extends string> = Record<never, never> extends Record<M, true> ? never : M;

/**
 * A payload the action does not accept; answered as INVALID_ARGUMENT
 * `action_input_invalid` with this message. The message is returned to the
 * caller and may be logged, so it is a fixed text chosen by the action and
 * never quotes the payload: the constructor is private, and
 * `ActionInputError.because` only takes a FixedText.
 */
export class ActionInputError extends Error {
  override readonly name = "ActionInputError";

  private constructor(message: string) {
    super(message);
  }

  static because<const M extends string>(message: FixedText<M>): ActionInputError {
    return new ActionInputError(message);
  }

  /** A message composed by OpenExec from a schema's issues (src/actions/input-issues.ts), never from the payload. */
  static fromSchema(message: string): ActionInputError {
    return new ActionInputError(message);
  }
}

/** A JSON Schema (2020-12) document, as published in the action catalogue. */
export type JsonSchema = JsonObject;

/**
 * A statically defined handler, as the executor runs it. Operators write
 * actions with defineAction (src/actions/define-action.ts), which builds
 * this from a schema; the executor sees only this shape.
 */
export interface Action<Input> {
  /** Matches actionNamePattern. */
  readonly name: string;
  readonly effects: ActionEffects;
  /** One line for `/health`, `GET /actions` and `--help`. */
  readonly summary: string;
  /** What the payload may be: published in the catalogue, and what parseInput enforces. */
  readonly inputSchema: JsonSchema;
  /** What a result is, when the action declares it (results are then checked against it). */
  readonly outputSchema?: JsonSchema;
  /** The handler's own time limit; OPENEXEC_HANDLER_TIMEOUT_MS when absent. */
  readonly timeoutMs?: number;
  /** Validates and narrows the payload; throws (or rejects with) ActionInputError on anything unexpected. */
  parseInput(payload: JsonObject): Input | Promise<Input>;
  run(input: Input, context: ExecutionContext): ActionEffect | Promise<ActionEffect>;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds actions of every input type.
export type AnyAction = Action<any>;

/** Lower-case dotted words, e.g. "echo" or "counter.add"; at most 64 characters. */
export const actionNamePattern = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$/;
export const actionNameMaxLength = 64;

/** The longest time limit an action may declare: one hour, the longest lease (OPENEXEC_LEASE_MS). */
export const actionTimeoutMaxMs = 3_600_000;

export function isValidActionName(name: string): boolean {
  return name.length <= actionNameMaxLength && actionNamePattern.test(name);
}

/** The input schema of an action that takes any JSON object (hand-written test actions). */
export const anyObjectSchema: JsonSchema = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: {},
};
