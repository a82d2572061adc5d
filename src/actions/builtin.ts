import type { AnyAction } from "./action.js";
import { addAction } from "./add.js";
import { counterAddAction } from "./counter-add.js";
import { echoAction } from "./echo.js";
import { ActionRegistry } from "./registry.js";

/** Every action this build ships. Adding one means adding it here, in source. */
export const builtinActions: readonly AnyAction[] = [echoAction, addAction, counterAddAction];

/** A sealed registry of the built-in actions. */
export function createBuiltinRegistry(): ActionRegistry {
  const registry = new ActionRegistry();
  for (const action of builtinActions) registry.register(action);
  return registry.seal();
}
