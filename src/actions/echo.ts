import type { JsonObject } from "@bufbuild/protobuf";
import { defineAction } from "./define-action.js";
import { z } from "./zod.js";

/** Returns its payload: `{"echo": payload}`. Any JSON object is accepted (payload limits still apply). */
export const echoAction = defineAction({
  name: "echo",
  effects: "ledger",
  summary: 'returns {"echo": payload}',
  input: z.looseObject({}),
  // The executor checked the payload is JSON (depth, keys) before the schema saw it.
  run: (payload) => ({ echo: payload as JsonObject }),
});
