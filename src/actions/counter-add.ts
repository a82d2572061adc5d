import type { Action } from "./action.js";
import { ActionInputError, expectOnlyKeys } from "./action.js";

interface CounterAddInput {
  readonly key: string;
  readonly delta: number;
}

const maxKeyLength = 128;

/**
 * Adds `delta` to the tenant's counter `key` and returns the new total. The
 * counter lives in the ledger and is updated in the execution's own commit, so
 * each execution applies its delta exactly once however often it is replayed.
 */
export const counterAddAction: Action<CounterAddInput> = {
  name: "counter.add",
  effects: "ledger",
  summary: 'adds to a durable counter: {"key": "k", "delta": 1} gives {"key": "k", "value": total}',
  parseInput(payload) {
    expectOnlyKeys(payload, ["key", "delta"]);
    const { key, delta } = payload;
    if (typeof key !== "string" || key.length === 0 || key.length > maxKeyLength) {
      throw ActionInputError.because(`"key" must be a string of 1-${maxKeyLength} characters`);
    }
    if (typeof delta !== "number" || !Number.isSafeInteger(delta)) {
      throw ActionInputError.because('"delta" must be an integer between -(2^53-1) and 2^53-1');
    }
    return { key, delta };
  },
  run: ({ key, delta }) => ({
    kind: "counter_add",
    key,
    delta,
  }),
};
