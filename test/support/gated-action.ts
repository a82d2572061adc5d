import { type Action, anyObjectSchema } from "../../src/actions/action.js";
import { builtinActions } from "../../src/actions/builtin.js";
import { ActionRegistry } from "../../src/actions/registry.js";

/** The built-in actions plus `test.wait`, an external action that runs until the test releases it. */
export interface GatedActions {
  readonly registry: ActionRegistry;
  /** Resolves once a `test.wait` handler is running. */
  readonly running: Promise<void>;
  /** Lets every `test.wait` handler finish, with the result {"done": true}. */
  release(): void;
}

export function gatedActions(): GatedActions {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => {
    release = resolve;
  });
  let started: () => void = () => {};
  const running = new Promise<void>((resolve) => {
    started = resolve;
  });
  const waiting: Action<unknown> = {
    name: "test.wait",
    effects: "external",
    summary: "waits for the test",
    inputSchema: anyObjectSchema,
    parseInput: (payload) => payload,
    run: async () => {
      started();
      await gate;
      return { kind: "result", result: { done: true } };
    },
  };
  const registry = new ActionRegistry();
  for (const action of [...builtinActions, waiting]) registry.register(action);
  registry.seal();
  return { registry, running, release: () => release() };
}
