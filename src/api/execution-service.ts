import { toJson } from "@bufbuild/protobuf";
import type { Value } from "@bufbuild/protobuf/wkt";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import type { TransparencyLog } from "../evidence/transparency-log.js";
import { verifyStoredReceipt } from "../evidence/verify-stored-receipt.js";
import type { Executor } from "../execution/executor.js";
import type { RequestLimits } from "../execution/request-limits.js";
import type { LedgerStore } from "../ledger/store.js";
import type { VerificationKey } from "../signing/ed25519-keys.js";
import { toExecuteResponse } from "./execute-response.js";

/** openexec.v1.ExecutionService: the Connect, gRPC and gRPC-web face of the executor. */
export function createExecutionService(deps: {
  readonly executor: Executor;
  readonly store: LedgerStore;
  readonly limits: RequestLimits;
  readonly receiptKey: VerificationKey;
  readonly log: TransparencyLog;
}): ServiceImpl<typeof ExecutionService> {
  return {
    async execute(request) {
      const outcome = await deps.executor.execute({
        action: request.action,
        payload: request.payload,
        nonce: request.nonce,
        approvalArtifact: request.approvalArtifact,
      });
      return toExecuteResponse(outcome);
    },
    async verifyReceipt(request) {
      const valid = await verifyStoredReceipt(
        deps,
        {
          executionId: request.execId,
          result: valueToJson(request.result),
          receipt: request.receipt,
        },
        deps.limits.maxJsonDepth + 1,
      );
      return { valid };
    },
  };
}

/** An absent or empty Value is "no result claimed". */
function valueToJson(value: Value | undefined) {
  if (value === undefined || value.kind.case === undefined) return undefined;
  return toJson(ValueSchema, value);
}
