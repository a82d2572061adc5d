import type { JsonObject, JsonValue } from "@bufbuild/protobuf";

/**
 * What a handler may know about the execution it serves. Handlers are
 * deterministic: they read the time and identity from here, never from the
 * clock or a random source, so a replay can be explained from the ledger.
 */
export interface ExecutionContext {
  readonly executionId: string;
  readonly nonce: string;
  readonly tenantId: string;
  /** Fixed for the execution: the moment its nonce was reserved. */
  readonly logicalTime: Date;
  /** Aborted when the handler's time limit passes or the server stops. */
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

  /** Used by expectOnlyKeys: names the fields the action allows, never the one it got. */
  static unexpectedField<const K extends string>(allowed: readonly FixedText<K>[]): ActionInputError {
    return new ActionInputError(`unexpected field; expected only ${allowed.join(", ")}`);
  }
}

/** A statically defined handler. */
export interface Action<Input> {
  /** Matches actionNamePattern. */
  readonly name: string;
  /**
   * "ledger": every effect of the handler is its returned ActionEffect (it
   * computes, and touches nothing outside); the executor may then run it
   * before the reservation and commit nonce, effect and receipt in one
   * transaction. "external": it acts on the world (files, networks,
   * devices); the nonce is durably reserved before it runs, and a crash
   * mid-run leaves the execution interrupted, never re-run.
   */
  readonly effects: "ledger" | "external";
  /** One line for `/health` readers and `--help`. */
  readonly summary: string;
  /** Validates and narrows the payload; throws ActionInputError on anything unexpected. */
  parseInput(payload: JsonObject): Input;
  run(input: Input, context: ExecutionContext): ActionEffect | Promise<ActionEffect>;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds actions of every input type.
export type AnyAction = Action<any>;

/** Lower-case dotted words, e.g. "echo" or "counter.add"; at most 64 characters. */
export const actionNamePattern = /^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*$/;
export const actionNameMaxLength = 64;

export function isValidActionName(name: string): boolean {
  return name.length <= actionNameMaxLength && actionNamePattern.test(name);
}

/**
 * Refuses members other than `allowed`: handlers reject what they do not
 * expect. The message names the allowed fields, never the unexpected one.
 */
export function expectOnlyKeys<const K extends string>(payload: JsonObject, allowed: readonly FixedText<K>[]): void {
  for (const key of Object.keys(payload)) {
    if (!(allowed as readonly string[]).includes(key)) throw ActionInputError.unexpectedField(allowed);
  }
}
