// `openexec/client`: what an agent or governance service calls OpenExec with.
// Semver'd: every name exported here is in CHANGELOG.md.
import { type JsonValue, toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { type Client, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { ErrorDetailSchema } from "../../gen/openexec/v1/error_pb.js";
import { type ExecuteResponse, ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import { InfoService } from "../../gen/openexec/v1/info_pb.js";
import { type GetReceiptBundleResponse, TransparencyLogService } from "../../gen/openexec/v1/transparency_log_pb.js";
import type { OfflineReceiptEvidence } from "../receipts/verify-offline.js";

export { Code, ConnectError } from "@connectrpc/connect";
export * from "../../gen/openexec/v1/approval_pb.js";
export * from "../../gen/openexec/v1/envelope_pb.js";
export * from "../../gen/openexec/v1/error_pb.js";
export * from "../../gen/openexec/v1/execution_pb.js";
export * from "../../gen/openexec/v1/info_pb.js";
export * from "../../gen/openexec/v1/receipt_pb.js";
export * from "../../gen/openexec/v1/transparency_log_pb.js";
export { type ApprovalRequest, type SignedApproval, signApproval } from "../client/sign-approval.js";
export { canonicalJsonBytes } from "../json/canonical-json.js";
export {
  evidenceFromBundle,
  type InclusionProofEvidence,
  type OfflineReceiptEvidence,
  type OfflineVerdict,
  verifyReceiptOffline,
} from "../receipts/verify-offline.js";

/** The wire protocols OpenExec serves RPCs in. */
export type OpenExecProtocol = "connect" | "grpc" | "grpc-web";

export interface OpenExecClientOptions {
  /** Default "connect". gRPC always runs over HTTP/2 (h2c for http:// URLs). */
  readonly protocol?: OpenExecProtocol | undefined;
  /** Protobuf binary instead of JSON (Connect and gRPC-web; gRPC is always binary). Default false. */
  readonly useBinaryFormat?: boolean | undefined;
  /** Connect and gRPC-web: "1.1" (default) or "2". */
  readonly httpVersion?: "1.1" | "2" | undefined;
  /** A deadline for every call, unless the call sets its own. */
  readonly defaultTimeoutMs?: number | undefined;
  readonly interceptors?: readonly Interceptor[] | undefined;
}

/** One client per OpenExec service, over one transport. */
export interface OpenExecClient {
  readonly execution: Client<typeof ExecutionService>;
  readonly info: Client<typeof InfoService>;
  readonly log: Client<typeof TransparencyLogService>;
  /** The transport the three share, for other connect-es clients. */
  readonly transport: Transport;
}

/** Clients for an OpenExec server at `baseUrl` (e.g. http://127.0.0.1:5000). */
export function createOpenExecClient(baseUrl: string, options: OpenExecClientOptions = {}): OpenExecClient {
  const common = {
    baseUrl,
    ...(options.interceptors === undefined ? {} : { interceptors: [...options.interceptors] }),
    ...(options.defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs: options.defaultTimeoutMs }),
  };
  const binary = options.useBinaryFormat ?? false;
  const httpVersion = options.httpVersion ?? "1.1";
  let transport: Transport;
  switch (options.protocol ?? "connect") {
    case "connect":
      transport = createConnectTransport({ ...common, httpVersion, useBinaryFormat: binary });
      break;
    case "grpc":
      transport = createGrpcTransport(common);
      break;
    case "grpc-web":
      transport = createGrpcWebTransport({ ...common, httpVersion, useBinaryFormat: binary });
      break;
    default:
      throw new TypeError(`unknown protocol ${JSON.stringify(options.protocol)}: connect, grpc or grpc-web`);
  }
  return {
    execution: createClient(ExecutionService, transport),
    info: createClient(InfoService, transport),
    log: createClient(TransparencyLogService, transport),
    transport,
  };
}

/**
 * The reason code of an error from OpenExec (docs/ERRORS.md), e.g.
 * "nonce_reused" or "action_input_invalid"; undefined for other errors.
 * Callers switch on this and the Code, never on message text.
 */
export function reasonOf(error: unknown): string | undefined {
  if (!(error instanceof ConnectError)) return undefined;
  const [detail] = error.findDetails(ErrorDetailSchema);
  return detail?.reason || (error.metadata.get("openexec-reason") ?? undefined);
}

/** An execution's result as plain JSON (null when it failed): what its receipt's digest covers. */
export function resultOf(response: Pick<ExecuteResponse, "result">): JsonValue {
  return response.result === undefined ? null : toJson(ValueSchema, response.result);
}

/**
 * The evidence verifyReceiptOffline takes, from a GetReceiptBundle answer
 * and the executor's receipt key (InfoService.GetReceiptKey, or out of band).
 * `result` is the result claimed (ExecuteResponse.result), checked against
 * the receipt's digest when given.
 */
export function receiptEvidence(
  publicKeyPem: string,
  bundle: GetReceiptBundleResponse,
  result?: OfflineReceiptEvidence["result"],
): OfflineReceiptEvidence | string {
  if (bundle.signedReceipt === undefined) return "the bundle holds no signed receipt";
  const proof = bundle.inclusionProof;
  return {
    publicKeyPem,
    signedReceipt: bundle.signedReceipt,
    result,
    checkpoint: bundle.checkpoint === "" ? undefined : bundle.checkpoint,
    inclusionProof:
      proof === undefined
        ? undefined
        : { logIndex: Number(proof.logIndex), treeSize: Number(proof.treeSize), hashes: proof.hashes },
  };
}
