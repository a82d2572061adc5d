import type { AnyAction } from "./action.js";
import { addAction } from "./add.js";
import { counterAddAction } from "./counter-add.js";
import { echoAction } from "./echo.js";
import { ActionRegistry } from "./registry.js";

/** The demo actions `openexec serve` ships. An operator's own program serves its own (docs/ACTIONS.md). */
export const builtinActions: readonly AnyAction[] = [echoAction, addAction, counterAddAction];

/** A sealed registry of the built-in actions. */
export function createBuiltinRegistry(): ActionRegistry {
  return ActionRegistry.of(builtinActions);
}
