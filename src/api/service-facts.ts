import type { EventEmitter } from "node:events";
import { create } from "@bufbuild/protobuf";
import {
  type ActionDescription,
  type GetHealthResponse,
  GetHealthResponseSchema,
  type GetInfoResponse,
  GetInfoResponseSchema,
  type GetReadinessResponse,
  GetReadinessResponseSchema,
  type GetReceiptKeyResponse,
  GetReceiptKeyResponseSchema,
  type GetVersionResponse,
  GetVersionResponseSchema,
  type KeyInfo,
  type ListActionsResponse,
  ListActionsResponseSchema,
} from "../../gen/openexec/v1/info_pb.js";
import type { ExecMode } from "../approval/approval-gate.js";
import type { Freeze } from "../ledger/store.js";
import { apiPackage, openexecVersion } from "../version.js";

/** What the info endpoints report about this executor. */
export interface ServiceFacts {
  readonly mode: ExecMode;
  readonly tenantId: string;
  readonly allowedActions: ReadonlySet<string> | undefined;
  readonly actions: readonly string[];
  /** Every registered action described, by name (src/api/action-catalogue.ts). */
  readonly catalogue: readonly ActionDescription[];
  readonly approvalKeys: readonly KeyInfo[];
  /** The key that signs this executor's receipts. */
  readonly receiptKey: { readonly info: KeyInfo; readonly publicPem: string };
  readonly schemaVersion: number;
  /** Resolves to undefined when ready, or the reason code why not. */
  readonly readiness: () => Promise<string | undefined>;
  /** Emits "change" when readiness may have changed (a stop began), so that watchers need not wait for a poll. */
  readonly readinessChanges?: EventEmitter;
  /** The operator's freezes in force, as last read from the ledger. */
  readonly frozen?: () => readonly Freeze[];
}

export const openAllowListWarning = "No execution allow-list configured";

export function healthOf(facts: ServiceFacts): GetHealthResponse {
  const restricted = facts.allowedActions !== undefined;
  return create(GetHealthResponseSchema, {
    status: "healthy",
    execMode: facts.mode,
    signatureVerification: facts.mode === "clawshield" ? "enabled" : "disabled",
    restriction: restricted ? "restricted" : "open",
    allowList: restricted ? [...facts.allowedActions].sort() : [],
    warning: restricted ? "" : openAllowListWarning,
    tenantId: facts.tenantId,
    actions: [...facts.actions],
    actionSummaries: Object.fromEntries(facts.catalogue.map((action) => [action.name, action.summary])),
    approvalKeys: [...facts.approvalKeys],
    receiptKey: facts.receiptKey.info,
    frozen: (facts.frozen?.() ?? []).map((f) => ({
      scope: f.scope,
      reason: f.reason,
      frozenAt: new Date(f.frozenAtMs).toISOString(),
    })),
  });
}

export async function readinessOf(facts: ServiceFacts): Promise<GetReadinessResponse> {
  const reason = await facts.readiness();
  return create(GetReadinessResponseSchema, { ready: reason === undefined, reason: reason ?? "" });
}

export function infoOf(): GetInfoResponse {
  return create(GetInfoResponseSchema, { service: "OpenExec", status: "running", version: openexecVersion });
}

export function versionOf(facts: ServiceFacts): GetVersionResponse {
  return create(GetVersionResponseSchema, {
    version: openexecVersion,
    api: apiPackage,
    runtime: process.version,
    schemaVersion: facts.schemaVersion,
  });
}

/** The action catalogue, by name, as built at start. */
export function actionsOf(facts: ServiceFacts): ListActionsResponse {
  return create(ListActionsResponseSchema, { actions: [...facts.catalogue] });
}

export function receiptKeyOf(facts: ServiceFacts): GetReceiptKeyResponse {
  return create(GetReceiptKeyResponseSchema, { key: facts.receiptKey.info, publicKeyPem: facts.receiptKey.publicPem });
}
