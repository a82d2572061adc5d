import { ActionInputError } from "./action.js";
import { defineAction } from "./define-action.js";
import { z } from "./zod.js";

/** Adds two numbers: `{a, b}` gives `{"sum": a + b}` (IEEE-754 doubles). */
export const addAction = defineAction({
  name: "add",
  effects: "ledger",
  summary: 'adds numbers: {"a": 1, "b": 2} gives {"sum": 3}',
  input: z.strictObject({ a: z.number(), b: z.number() }).refine(({ a, b }) => {
    // Two finite doubles can still sum to Infinity, which JSON cannot carry.
    if (!Number.isFinite(a + b)) throw ActionInputError.because("the sum overflows a double");
    return true;
  }),
  output: z.strictObject({ sum: z.number() }),
  run: ({ a, b }) => ({ sum: a + b }),
});
