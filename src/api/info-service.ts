import type { ServiceImpl } from "@connectrpc/connect";
import type { InfoService } from "../../gen/openexec/v1/info_pb.js";
import {
  actionsOf,
  healthOf,
  infoOf,
  readinessOf,
  receiptKeyOf,
  type ServiceFacts,
  versionOf,
} from "./service-facts.js";

/** openexec.v1.InfoService: what GET /, /health, /ready, /version, /receipts/key and /actions answer. */
export function createInfoService(facts: ServiceFacts): ServiceImpl<typeof InfoService> {
  return {
    getInfo: () => infoOf(),
    getHealth: () => healthOf(facts),
    getReadiness: () => readinessOf(facts),
    getVersion: () => versionOf(facts),
    getReceiptKey: () => receiptKeyOf(facts),
    listActions: () => actionsOf(facts),
  };
}
