import { defineAction, LedgerEffect } from "./define-action.js";
import { z } from "./zod.js";

const maxKeyLength = 128;

/**
 * Adds `delta` to the tenant's counter `key` and returns the new total. The
 * counter lives in the ledger and is updated in the execution's own commit, so
 * each execution applies its delta exactly once however often it is replayed.
 */
export const counterAddAction = defineAction({
  name: "counter.add",
  effects: "ledger",
  summary: 'adds to a durable counter: {"key": "k", "delta": 1} gives {"key": "k", "value": total}',
  input: z.strictObject({
    key: z.string().min(1).max(maxKeyLength),
    delta: z.int(),
  }),
  run: ({ key, delta }) => LedgerEffect.counterAdd(key, delta),
});
