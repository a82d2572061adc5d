import type { Action } from "./action.js";
import { ActionInputError, expectOnlyKeys } from "./action.js";

interface AddInput {
  readonly a: number;
  readonly b: number;
}

/** Adds two numbers: `{a, b}` gives `{"sum": a + b}` (IEEE-754 doubles). */
export const addAction: Action<AddInput> = {
  name: "add",
  effects: "ledger",
  summary: 'adds numbers: {"a": 1, "b": 2} gives {"sum": 3}',
  parseInput(payload) {
    expectOnlyKeys(payload, ["a", "b"]);
    const { a, b } = payload;
    if (typeof a !== "number" || typeof b !== "number") {
      throw ActionInputError.because('"a" and "b" must both be numbers');
    }
    // Two finite doubles can still sum to Infinity, which JSON cannot carry.
    if (!Number.isFinite(a + b)) throw ActionInputError.because("the sum overflows a double");
    return { a, b };
  },
  run: ({ a, b }) => ({ kind: "result", result: { sum: a + b } }),
};
