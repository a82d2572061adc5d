import type { JsonValue } from "@bufbuild/protobuf";
import type { ActionEffect, AnyAction, ExecutionContext } from "../actions/action.js";
import { ResultSchemaError } from "../actions/define-action.js";
import type { FailureReason } from "../errors/reason.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import { CanonicalJsonError } from "../json/canonical-json.js";
import { exceedsJsonDepth, hasReservedKey } from "../json/strict-json.js";

/** An effect whose plain result has been checked, with that result's digest (computed once). */
export type CheckedEffect =
  | { readonly kind: "result"; readonly result: JsonValue; readonly resultDigest: Buffer }
  | Extract<ActionEffect, { kind: "counter_add" }>;

export type HandlerOutcome =
  | { readonly ok: true; readonly effect: CheckedEffect }
  | { readonly ok: false; readonly reason: FailureReason; readonly error: unknown };

class HandlerTimeout extends Error {
  override readonly name = "HandlerTimeout";
}

/**
 * Runs one handler under its time limit. Never throws: a throw, a timeout or a
 * result JSON cannot carry becomes a failure reason. A handler that blocks the
 * event loop cannot be interrupted from JavaScript; handlers must be async.
 *
 * The handler's signal aborts at the time limit, and when any of `alsoAbortOn`
 * does (an external action's lease, ledger.leaseSignal). Those only tell the
 * handler to stop: it is still awaited, and what it then does (throws, as a
 * fenced handler should) is its outcome.
 */
export async function runHandler(
  action: AnyAction,
  input: unknown,
  context: Omit<ExecutionContext, "signal">,
  limits: { readonly timeoutMs: number; readonly maxResultDepth: number },
  alsoAbortOn: readonly AbortSignal[] = [],
): Promise<HandlerOutcome> {
  const controller = new AbortController();
  const signal = alsoAbortOn.length === 0 ? controller.signal : AbortSignal.any([controller.signal, ...alsoAbortOn]);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const timeout = new HandlerTimeout(`handler exceeded ${limits.timeoutMs} ms`);
      controller.abort(timeout);
      reject(timeout);
    }, limits.timeoutMs);
  });
  try {
    const effect = await Promise.race([
      Promise.resolve().then(() => action.run(input, { ...context, signal })),
      deadline,
    ]);
    if (effect.kind === "counter_add") return { ok: true, effect };
    return {
      ok: true,
      effect: {
        kind: "result",
        result: effect.result,
        resultDigest: checkedDigest(effect.result, limits.maxResultDepth),
      },
    };
  } catch (error) {
    if (error instanceof HandlerTimeout) return { ok: false, reason: "handler_timeout", error };
    if (error instanceof CanonicalJsonError || error instanceof ResultSchemaError)
      return { ok: false, reason: "result_invalid", error };
    return { ok: false, reason: "handler_error", error };
  } finally {
    clearTimeout(timer);
  }
}

/** A result must be a JSON value with a canonical form, within the depth limit; returns its digest. */
function checkedDigest(result: JsonValue, maxDepth: number): Buffer {
  if (result === undefined) throw new CanonicalJsonError("the handler returned no result");
  // Depth first: canonical encoding recurses, and must only see bounded values.
  if (exceedsJsonDepth(result, maxDepth)) throw new CanonicalJsonError(`result nested deeper than ${maxDepth}`);
  if (hasReservedKey(result)) throw new CanonicalJsonError("result holds a reserved key (__proto__)");
  return canonicalJsonDigest(result);
}
