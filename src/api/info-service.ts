import type { ServiceImpl } from "@connectrpc/connect";
import type { InfoService } from "../../gen/openexec/v1/info_pb.js";
import { healthOf, infoOf, readinessOf, receiptKeyOf, type ServiceFacts, versionOf } from "./service-facts.js";

/** openexec.v1.InfoService: what GET /, /health, /ready and /version answer. */
export function createInfoService(facts: ServiceFacts): ServiceImpl<typeof InfoService> {
  return {
    getInfo: () => infoOf(),
    getHealth: () => healthOf(facts),
    getReadiness: () => readinessOf(facts),
    getVersion: () => versionOf(facts),
    getReceiptKey: () => receiptKeyOf(facts),
  };
}
