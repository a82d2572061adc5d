import type { JsonObject } from "@bufbuild/protobuf";
import type { Action } from "./action.js";

/** Returns its payload: `{"echo": payload}`. */
export const echoAction: Action<JsonObject> = {
  name: "echo",
  effects: "ledger",
  summary: 'returns {"echo": payload}',
  parseInput: (payload) => payload,
  run: (payload) => ({ kind: "result", result: { echo: payload } }),
};
