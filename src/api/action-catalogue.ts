import { create } from "@bufbuild/protobuf";
import { type ActionDescription, ActionDescriptionSchema } from "../../gen/openexec/v1/info_pb.js";
import type { ActionRegistry } from "../actions/registry.js";

/** What the catalogue needs from the configuration besides the actions themselves. */
export interface CatalogueSettings {
  /** OPENEXEC_ALLOWED_ACTIONS; undefined when every registered action is allowed. */
  readonly allowedActions: ReadonlySet<string> | undefined;
  /** OPENEXEC_HANDLER_TIMEOUT_MS: the limit of every action that declares none. */
  readonly handlerTimeoutMs: number;
}

/**
 * The action catalogue (GET /actions, InfoService.ListActions), by name.
 * Built once at start from the sealed registry: the registry and the
 * configuration cannot change afterwards, so neither can the catalogue. The
 * schemas are the very documents the payloads and results are checked
 * against, not a description written beside them.
 */
export function actionCatalogue(actions: ActionRegistry, settings: CatalogueSettings): readonly ActionDescription[] {
  if (!actions.sealed) throw new Error("the action catalogue is built from a sealed registry");
  return actions.list().map((action) =>
    create(ActionDescriptionSchema, {
      name: action.name,
      summary: action.summary,
      effects: action.effects,
      inputSchema: action.inputSchema,
      outputSchema: action.outputSchema,
      // The same limit the executor runs the handler under (src/execution/executor.ts).
      timeoutMs: action.timeoutMs ?? settings.handlerTimeoutMs,
      // Fails closed: with an allow-list, only the names it lists are allowed.
      allowed: settings.allowedActions === undefined || settings.allowedActions.has(action.name),
    }),
  );
}
