import { isValidActionName } from "../actions/action.js";
import type { Freeze } from "../ledger/store.js";

/** The scope that freezes every action. */
export const allActions = "*";

/** A scope is '*' or a well-formed action name (it need not be registered: replicas may differ). */
export function isValidScope(scope: string): boolean {
  return scope === allActions || isValidActionName(scope);
}

/** The longest reason an operator may give: it is shown in /health to every caller. */
export const maxReasonLength = 500;

/** The freeze that stops `action`, if any: one of all actions wins over the action's own. */
export function freezeOf(freezes: readonly Freeze[], action: string): Freeze | undefined {
  return freezes.find((f) => f.scope === allActions) ?? freezes.find((f) => f.scope === action);
}
