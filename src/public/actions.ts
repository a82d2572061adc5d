// `openexec/actions`: what an operator writes actions with (docs/ACTIONS.md).
// Semver'd: every name exported here is in CHANGELOG.md.
export {
  type ActionEffect,
  type ActionEffects,
  ActionInputError,
  type ExecutionContext,
  type FixedText,
  type JsonSchema,
} from "../actions/action.js";
export { builtinActions } from "../actions/builtin.js";
export {
  type ActionDefinition,
  defineAction,
  LedgerEffect,
  ResultSchemaError,
} from "../actions/define-action.js";
export { ActionDefinitionError, type ActionSchema } from "../actions/input-schema.js";
export { z } from "../actions/zod.js";

import type { Action as InternalAction } from "../actions/action.js";

/** An action as defineAction returns it: what a server is given. */
export type Action = InternalAction<unknown>;
