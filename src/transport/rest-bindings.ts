import {
  type DescMessage,
  type DescMethodUnary,
  fromJson,
  type JsonObject,
  type JsonValue,
  type Message,
  type MessageInitShape,
  type MessageShape,
  toJson,
} from "@bufbuild/protobuf";
import type { GenMessage } from "@bufbuild/protobuf/codegenv2";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { ExecuteResponseSchema, ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import {
  GetHealthResponseSchema,
  GetInfoResponseSchema,
  GetReceiptKeyResponseSchema,
  GetVersionResponseSchema,
  InfoService,
  ListActionsResponseSchema,
} from "../../gen/openexec/v1/info_pb.js";
import { ExecutionStatus } from "../../gen/openexec/v1/receipt_pb.js";
import { type InclusionProof, TransparencyLogService } from "../../gen/openexec/v1/transparency_log_pb.js";
import { Rejection } from "../errors/reason.js";
import { decodeCanonicalBase64 } from "../json/base64.js";

/** What a REST request offers a binding: its query, and its body as a strict JSON object. */
export interface RestInput {
  readonly query: URLSearchParams;
  /** Reads the body (application/json, within the size and depth limits) as an object. */
  body(): Promise<JsonObject>;
}

/** How a REST path answers a method's response. */
export type RestAnswer =
  | { readonly kind: "json"; readonly status: number; readonly body: unknown }
  | { readonly kind: "text"; readonly status: number; readonly text: string };

/**
 * One documented REST path bound to an RPC: how its request message is built
 * from the HTTP request (with REST's rules: the original's field names and
 * reason codes), and how the response message is rendered. The method itself
 * runs through the same chain as every RPC (src/api/unary-caller.ts).
 */
export interface RestBinding {
  readonly httpMethod: "GET" | "POST";
  readonly path: string;
  readonly method: DescMethodUnary;
  request(input: RestInput): Promise<MessageInitShape<DescMessage>>;
  render(response: Message): RestAnswer;
}

function bind<I extends DescMessage, O extends DescMessage>(
  httpMethod: RestBinding["httpMethod"],
  path: string,
  method: DescMethodUnary<I, O>,
  request: (input: RestInput) => Promise<MessageInitShape<I>> | MessageInitShape<I>,
  render: (response: MessageShape<O>) => RestAnswer,
): RestBinding {
  return {
    httpMethod,
    path,
    method: method as unknown as DescMethodUnary,
    request: async (input) => (await request(input)) as MessageInitShape<DescMessage>,
    render: (response) => render(response as MessageShape<O>),
  };
}

const json = (body: unknown, status = 200): RestAnswer => ({ kind: "json", status, body });
const asJson = <T extends Message>(schema: GenMessage<T>, message: T) =>
  toJson(schema, message, { useProtoFieldName: true }) as JsonObject;
const none = () => ({});

/** The original OpenExec's paths (docs/API.md), each a binding onto one RPC. */
export const restBindings: readonly RestBinding[] = [
  bind("GET", "/", InfoService.method.getInfo, none, (r) => json(asJson(GetInfoResponseSchema, r))),
  bind("GET", "/health", InfoService.method.getHealth, none, (r) => json(asJson(GetHealthResponseSchema, r))),
  bind("GET", "/ready", InfoService.method.getReadiness, none, (r) =>
    r.ready ? json({ ready: true }) : json({ ready: false, reason: r.reason }, 503),
  ),
  bind("GET", "/version", InfoService.method.getVersion, none, (r) => json(asJson(GetVersionResponseSchema, r))),
  // Every field of every entry, `"allowed": false` included: a reader need not know that proto JSON
  // leaves out false. `output_schema` is still absent when the action declares none.
  bind("GET", "/actions", InfoService.method.listActions, none, (r) =>
    json(toJson(ListActionsResponseSchema, r, { useProtoFieldName: true, alwaysEmitImplicit: true })),
  ),
  // The C2SP checkpoint itself, as witnesses and tlog tools fetch it.
  bind("GET", "/log/checkpoint", TransparencyLogService.method.getCheckpoint, none, (r) => ({
    kind: "text",
    status: 200,
    text: r.checkpoint,
  })),
  bind(
    "GET",
    "/log/inclusion",
    TransparencyLogService.method.getInclusionProof,
    ({ query }) => ({ execId: query.get("exec_id") ?? "", treeSize: sizeParam(query, "tree_size", 0n) }),
    (r) => json({ ...inclusionJson(r.proof), checkpoint: r.checkpoint }),
  ),
  bind(
    "GET",
    "/log/consistency",
    TransparencyLogService.method.getConsistencyProof,
    ({ query }) => ({ oldSize: sizeParam(query, "old_size"), newSize: sizeParam(query, "new_size") }),
    (r) =>
      json({
        old_size: Number(r.oldSize),
        new_size: Number(r.newSize),
        hashes: r.hashes.map((hash) => Buffer.from(hash).toString("hex")),
      }),
  ),
  bind(
    "GET",
    "/receipts/bundle",
    TransparencyLogService.method.getReceiptBundle,
    ({ query }) => ({ execId: query.get("exec_id") ?? "" }),
    (r) =>
      json({
        signed_receipt:
          r.signedReceipt === undefined
            ? null
            : (toJson(SignedEnvelopeSchema, r.signedReceipt, { useProtoFieldName: true }) as JsonObject),
        checkpoint: r.checkpoint,
        inclusion_proof: inclusionJson(r.inclusionProof),
      }),
  ),
  bind("GET", "/receipts/key.pem", InfoService.method.getReceiptKey, none, (r) => ({
    kind: "text",
    status: 200,
    text: r.publicKeyPem,
  })),
  bind("GET", "/receipts/key", InfoService.method.getReceiptKey, none, (r) =>
    json(asJson(GetReceiptKeyResponseSchema, r)),
  ),
  bind(
    "POST",
    "/execute",
    ExecutionService.method.execute,
    async ({ body }) => executeRequest(await body()),
    (r) => json(restExecuteBody(asJson(ExecuteResponseSchema, r), r.status === ExecutionStatus.EXECUTED)),
  ),
  bind(
    "POST",
    "/receipts/verify",
    ExecutionService.method.verifyReceipt,
    async ({ body }) => {
      const request = await body();
      expectOnly(request, ["exec_id", "result", "receipt"]);
      return {
        execId: requireString(request, "exec_id"),
        result: request.result === undefined ? undefined : fromJson(ValueSchema, request.result),
        receipt: requireString(request, "receipt"),
      };
    },
    (r) => json({ valid: r.valid }),
  ),
];

/** The REST body of /execute, in the proto field names the original used. */
function executeRequest(body: JsonObject): MessageInitShape<typeof ExecutionService.method.execute.input> {
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

/** A tree size from the query string: a non-negative integer, or `fallback` when absent. */
function sizeParam(query: URLSearchParams, name: string, fallback?: bigint): bigint {
  const raw = query.get(name);
  if (raw === null && fallback !== undefined) return fallback;
  const value = raw !== null && /^\d{1,15}$/.test(raw) ? Number(raw) : Number.NaN;
  if (!Number.isSafeInteger(value)) throw new Rejection("log_range_invalid", `${name} must be a non-negative integer`);
  return BigInt(value);
}

function inclusionJson(proof: InclusionProof | undefined) {
  return {
    log_index: Number(proof?.logIndex ?? 0n),
    tree_size: Number(proof?.treeSize ?? 0n),
    hashes: (proof?.hashes ?? []).map((hash) => Buffer.from(hash).toString("hex")),
  };
}
