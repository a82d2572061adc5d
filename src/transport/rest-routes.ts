import { type JsonObject, type JsonValue, type Message, toJson } from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import { SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { ExecuteResponseSchema } from "../../gen/openexec/v1/execution_pb.js";
import {
  GetHealthResponseSchema,
  GetInfoResponseSchema,
  GetReceiptKeyResponseSchema,
  GetVersionResponseSchema,
} from "../../gen/openexec/v1/info_pb.js";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import { signedReceiptOf, toExecuteResponse } from "../api/execute-response.js";
import { healthOf, infoOf, readinessOf, receiptKeyOf, type ServiceFacts, versionOf } from "../api/service-facts.js";
import { isRejection, Rejection } from "../errors/reason.js";
import type { ExecuteCommand, Executor } from "../execution/executor.js";
import type { RequestLimits } from "../execution/request-limits.js";
import { decodeCanonicalBase64 } from "../json/base64.js";
import { decodeUtf8, JsonSyntaxError, parseStrictJson } from "../json/strict-json.js";
import { isStoreFailure, type LedgerStore } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { issuedReceipt, logIndexOf, type ReceiptBundle, receiptBundle } from "../receipts/receipt-bundle.js";
import type { InclusionProofAnswer, TransparencyLog } from "../receipts/transparency-log.js";
import { verifyStoredReceipt } from "../receipts/verify-stored-receipt.js";
import type { VerificationKey } from "../signing/ed25519-keys.js";
import { type NodeResponse, writeJson, writeRejection, writeText } from "./http-errors.js";
import { clientWentAway } from "./http-server.js";
import { serveLogTile } from "./log-tiles.js";
import { isJsonContentType, type NodeRequest, readBody } from "./request-body.js";

export interface RestDependencies {
  readonly executor: Executor;
  readonly store: LedgerStore;
  readonly facts: ServiceFacts;
  readonly limits: RequestLimits;
  readonly logger: Logger;
  readonly receiptKey: VerificationKey;
  readonly log: TransparencyLog;
  /** OPENEXEC_LOG_ENTRIES: serve entry bundles (every receipt) under /log/tile/entries/. */
  readonly logEntries: boolean;
}

type RestHandler = (req: NodeRequest, res: NodeResponse) => Promise<void>;

/**
 * The original OpenExec's plain-HTTP paths, as thin mappings onto the same
 * executor and facts the RPC services use: same validation, same reason codes.
 * Returns undefined for paths that are not REST paths (they go to Connect).
 */
export function createRestRoutes(deps: RestDependencies): (path: string) => Map<string, RestHandler> | undefined {
  const { executor, store, facts, limits, log, logEntries } = deps;
  const json = <T extends Message>(schema: GenMessage<T>, message: T) =>
    toJson(schema, message, { useProtoFieldName: true }) as JsonObject;
  const get = (handler: RestHandler) => new Map([["GET", handler]]);
  const post = (handler: RestHandler) => new Map([["POST", handler]]);

  const routes = new Map<string, Map<string, RestHandler>>([
    ["/", get(async (_req, res) => writeJson(res, 200, json(GetInfoResponseSchema, infoOf())))],
    ["/health", get(async (_req, res) => writeJson(res, 200, json(GetHealthResponseSchema, healthOf(facts))))],
    [
      "/ready",
      get(async (_req, res) => {
        const readiness = await readinessOf(facts);
        if (readiness.ready) writeJson(res, 200, { ready: true });
        else writeJson(res, 503, { ready: false, reason: readiness.reason });
      }),
    ],
    ["/version", get(async (_req, res) => writeJson(res, 200, json(GetVersionResponseSchema, versionOf(facts))))],
    [
      "/log/checkpoint",
      // The C2SP checkpoint itself, as witnesses and tlog tools fetch it.
      get(async (_req, res) => writeText(res, 200, (await log.checkpoint()).note)),
    ],
    [
      "/log/inclusion",
      get(async (req, res) => {
        const query = queryOf(req);
        const receipt = await issuedReceipt(store, query.get("exec_id") ?? "");
        const answer = await log.inclusionProof(logIndexOf(receipt), sizeParam(query, "tree_size", 0));
        writeJson(res, 200, { ...inclusionJson(answer), checkpoint: answer.checkpoint.note });
      }),
    ],
    [
      "/log/consistency",
      get(async (req, res) => {
        const query = queryOf(req);
        const oldSize = sizeParam(query, "old_size");
        const newSize = sizeParam(query, "new_size");
        const hashes = await log.consistencyProof(oldSize, newSize);
        writeJson(res, 200, { old_size: oldSize, new_size: newSize, hashes: hashes.map((h) => h.toString("hex")) });
      }),
    ],
    [
      "/receipts/bundle",
      get(async (req, res) => {
        const bundle = await receiptBundle(store, log, queryOf(req).get("exec_id") ?? "");
        writeJson(res, 200, bundleJson(bundle));
      }),
    ],
    ["/receipts/key.pem", get(async (_req, res) => writeText(res, 200, facts.receiptKey.publicPem))],
    [
      "/receipts/key",
      get(async (_req, res) => writeJson(res, 200, json(GetReceiptKeyResponseSchema, receiptKeyOf(facts)))),
    ],
    [
      "/execute",
      post(async (req, res) => {
        const body = await readJsonObject(req, limits);
        const outcome = await executor.execute(toExecuteCommand(body));
        const response = json(ExecuteResponseSchema, toExecuteResponse(outcome));
        writeJson(res, 200, restExecuteBody(response, outcome.execution.status === "executed"));
      }),
    ],
    [
      "/receipts/verify",
      post(async (req, res) => {
        const body = await readJsonObject(req, limits);
        expectOnly(body, ["exec_id", "result", "receipt"]);
        const valid = await verifyStoredReceipt(
          deps,
          {
            executionId: requireString(body, "exec_id"),
            result: body.result,
            receipt: requireString(body, "receipt"),
          },
          limits.maxJsonDepth + 1,
        );
        writeJson(res, 200, { valid });
      }),
    ],
  ]);
  const tiles = get((req, res) =>
    serveLogTile((req.url ?? "").split("?")[0] ?? "", res, { store, entries: logEntries }),
  );
  return (path) => routes.get(path) ?? (path.startsWith("/log/tile/") ? tiles : undefined);
}

/** Runs a REST handler, answering every refusal with its status and reason. */
export async function serveRest(
  handler: RestHandler,
  req: NodeRequest,
  res: NodeResponse,
  logger: Logger,
): Promise<void> {
  try {
    await handler(req, res);
  } catch (error) {
    if (isRejection(error)) {
      writeRejection(res, error);
      return;
    }
    if (isStoreFailure(error)) {
      writeRejection(res, new Rejection("store_unavailable", "the ledger is unavailable; retry later"));
      return;
    }
    if (clientWentAway(req, res)) {
      // The client closed the connection or reset the stream (e.g. mid-upload):
      // not a server fault, and there is nobody left to answer.
      logger.debug({ path: (req.url ?? "").split("?")[0] }, "client closed the request");
      return;
    }
    logger.error(
      { err: error instanceof Error ? error.name : typeof error, path: (req.url ?? "").split("?")[0] },
      "unexpected error",
    );
    writeJson(res, 500, { code: "internal", reason: "internal", message: "internal error" });
  }
}

async function readJsonObject(req: NodeRequest, limits: RequestLimits): Promise<JsonObject> {
  if (!isJsonContentType(req.headers["content-type"])) {
    // Requiring JSON also makes browsers preflight cross-site requests, so a
    // web page cannot post forms to an executor on localhost.
    throw new Rejection("unsupported_media_type", "Content-Type must be application/json");
  }
  const bytes = await readBody(req, limits.maxBodyBytes);
  let value: JsonValue;
  try {
    // The request object wraps a payload (limit maxJsonDepth) or a result (one
    // deeper); the executor and the verifier hold each to its own limit.
    value = parseStrictJson(decodeUtf8(bytes), { maxDepth: limits.maxJsonDepth + 2, refuseReservedKeys: true });
  } catch (error) {
    if (error instanceof JsonSyntaxError) throw new Rejection(error.reason, `invalid JSON body: ${error.message}`);
    throw error;
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Rejection("body_malformed", "the request body must be a JSON object");
  }
  return value;
}

/** The REST body of /execute, in the proto field names the original used. */
function toExecuteCommand(body: JsonObject): ExecuteCommand {
  expectOnly(body, ["action", "payload", "nonce", "approval_artifact"]);
  const { action, payload, nonce } = body;
  if (typeof action !== "string") throw new Rejection("action_invalid", '"action" must be a string');
  if (typeof nonce !== "string") throw new Rejection("nonce_invalid", '"nonce" must be a string');
  if (payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new Rejection("payload_invalid", '"payload" must be a JSON object');
  }
  return { action, nonce, payload, approvalArtifact: decodeArtifact(body.approval_artifact) };
}

/**
 * Bytes no SignedEnvelope decodes from (field 31 with the invalid wire type 7):
 * what an artifact that is not base64 becomes, so that clawshield mode denies
 * it as approval_malformed (403, recorded) and demo mode ignores it, as it
 * ignores every artifact.
 */
const undecodableArtifact = Uint8Array.of(0xff);

/**
 * approval_artifact is base64 (standard or URL-safe) as in protobuf JSON; null or absent means none.
 * Only the canonical spelling is read (no non-zero padding bits), so that every changed character is refused.
 */
function decodeArtifact(value: JsonValue | undefined): Uint8Array {
  if (value === undefined || value === null || value === "") return new Uint8Array(0);
  return (typeof value === "string" ? decodeCanonicalBase64(value) : undefined) ?? undecodableArtifact;
}

/**
 * The documented shape {"id","action","result","approved","receipt","replayed"}
 * plus "status" (and "reason" on failure) and "authorization" ("demo" or
 * "signed_approval") in lower case, and "signed_receipt".
 */
function restExecuteBody(response: JsonObject, executed: boolean): JsonObject {
  const status = executed ? ExecutionStatus.EXECUTED : ExecutionStatus.FAILED;
  return {
    id: response.id ?? "",
    action: response.action ?? "",
    result: response.result ?? null,
    approved: response.approved ?? false,
    receipt: response.receipt ?? "",
    replayed: response.replayed ?? false,
    status: ExecutionStatus[status].toLowerCase(),
    ...(response.reason === undefined ? {} : { reason: response.reason }),
    authorization: String(response.authorization ?? "")
      .replace(/^AUTHORIZATION_/, "")
      .toLowerCase(),
    ...(response.signed_receipt === undefined ? {} : { signed_receipt: response.signed_receipt }),
  };
}

function expectOnly(body: JsonObject, fields: readonly string[]): void {
  for (const key of Object.keys(body)) {
    if (!fields.includes(key)) {
      throw new Rejection("field_invalid", `unknown field ${JSON.stringify(key)}; expected ${fields.join(", ")}`);
    }
  }
}

function requireString(body: JsonObject, field: string): string {
  const value = body[field];
  if (typeof value !== "string") throw new Rejection("field_invalid", `"${field}" must be a string`);
  return value;
}

function queryOf(req: NodeRequest): URLSearchParams {
  return new URL(req.url ?? "/", "http://localhost").searchParams;
}

/** A tree size from the query string: a non-negative integer, or `fallback` when absent. */
function sizeParam(query: URLSearchParams, name: string, fallback?: number): number {
  const raw = query.get(name);
  if (raw === null && fallback !== undefined) return fallback;
  const value = raw !== null && /^\d{1,15}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw new Rejection("log_range_invalid", `${name} must be a non-negative integer`);
  return value;
}

function inclusionJson(answer: InclusionProofAnswer) {
  return {
    log_index: answer.logIndex,
    tree_size: answer.treeSize,
    hashes: answer.hashes.map((hash) => hash.toString("hex")),
  };
}

/** The offline-verification bundle (docs/RECEIPTS.md, "Bundles"): what `openexec verify-receipt --bundle` reads. */
export function bundleJson(bundle: ReceiptBundle): JsonObject {
  return {
    signed_receipt: toJson(SignedEnvelopeSchema, signedReceiptOf(bundle.receipt), {
      useProtoFieldName: true,
    }) as JsonObject,
    checkpoint: bundle.inclusion.checkpoint.note,
    inclusion_proof: inclusionJson(bundle.inclusion),
  };
}
