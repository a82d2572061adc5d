import { type AnyAction, isValidActionName } from "./action.js";

/**
 * The static set of actions. Filled once at start-up from source, then sealed:
 * nothing (no request, no configuration) can add a handler afterwards.
 */
export class ActionRegistry {
  readonly #actions = new Map<string, AnyAction>();
  #sealed = false;

  /** A sealed registry of `actions`, in one step: what a server is given. */
  static of(actions: Iterable<AnyAction>): ActionRegistry {
    const registry = new ActionRegistry();
    for (const action of actions) registry.register(action);
    return registry.seal();
  }

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

  /** Every action, by name: the catalogue's order. */
  list(): AnyAction[] {
    return this.names().map((name) => this.#actions.get(name) as AnyAction);
  }

  /** The time limits the actions declare themselves (the others take OPENEXEC_HANDLER_TIMEOUT_MS). */
  declaredTimeoutsMs(): number[] {
    return this.list().flatMap((action) => (action.timeoutMs === undefined ? [] : [action.timeoutMs]));
  }

  /** The longest time limit any action runs under, given the default limit. */
  longestTimeoutMs(defaultMs: number): number {
    return Math.max(defaultMs, ...this.declaredTimeoutsMs());
  }
}
