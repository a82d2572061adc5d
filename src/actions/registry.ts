import { type AnyAction, isValidActionName } from "./action.js";

/**
 * The static set of actions. Filled once at start-up from source, then sealed:
 * nothing (no request, no configuration) can add a handler afterwards.
 */
export class ActionRegistry {
  readonly #actions = new Map<string, AnyAction>();
  #sealed = false;

  register(action: AnyAction): this {
    if (this.#sealed) throw new Error(`action registry is sealed; cannot register "${action.name}"`);
    if (!isValidActionName(action.name)) throw new Error(`invalid action name "${action.name}"`);
    if (this.#actions.has(action.name)) throw new Error(`action "${action.name}" is registered twice`);
    this.#actions.set(action.name, action);
    return this;
  }

  seal(): this {
    this.#sealed = true;
    return this;
  }

  get sealed(): boolean {
    return this.#sealed;
  }

  get(name: string): AnyAction | undefined {
    return this.#actions.get(name);
  }

  names(): string[] {
    return [...this.#actions.keys()].sort();
  }
}
