import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import { InfoService } from "../../gen/openexec/v1/info_pb.js";
import { TransparencyLogService } from "../../gen/openexec/v1/transparency_log_pb.js";
import type { TransparencyLog } from "../evidence/transparency-log.js";
import type { Executor } from "../execution/executor.js";
import type { RequestLimits } from "../execution/request-limits.js";
import type { LedgerStore } from "../ledger/store.js";
import type { VerificationKey } from "../signing/ed25519-keys.js";
import { createExecutionService } from "./execution-service.js";
import { createHealthService } from "./health-service.js";
import { createInfoService } from "./info-service.js";
import { createReflectionServiceV1, createReflectionServiceV1alpha, DescriptorIndex } from "./reflection-service.js";
import type { ServiceFacts } from "./service-facts.js";
import { createTransparencyLogService } from "./transparency-log-service.js";

export interface ApiDependencies {
  readonly executor: Executor;
  readonly store: LedgerStore;
  readonly limits: RequestLimits;
  readonly facts: ServiceFacts;
  readonly receiptKey: VerificationKey;
  readonly log: TransparencyLog;
}

/** Every RPC service this server answers, in gRPC, gRPC-web and Connect alike. */
export const servedServices = [
  ExecutionService,
  InfoService,
  TransparencyLogService,
  Health,
  ServerReflectionV1,
  ServerReflectionV1alpha,
];

/** A service and its implementation. */
export interface ServedService {
  readonly service: DescService;
  readonly impl: object;
}

/** Every served service with its implementation: the one handler set behind every protocol and REST. */
export function serviceImplementations(deps: ApiDependencies): readonly ServedService[] {
  const index = new DescriptorIndex(servedServices);
  return [
    { service: ExecutionService, impl: createExecutionService(deps) },
    { service: InfoService, impl: createInfoService(deps.facts) },
    { service: TransparencyLogService, impl: createTransparencyLogService(deps) },
    {
      service: Health,
      impl: createHealthService(
        deps.facts,
        servedServices.map((s) => s.typeName),
      ),
    },
    { service: ServerReflectionV1, impl: createReflectionServiceV1(index) },
    { service: ServerReflectionV1alpha, impl: createReflectionServiceV1alpha(index) },
  ];
}

/** Registers `services` with a connect-es router (Connect, gRPC and gRPC-web). */
export function registerServices(services: readonly ServedService[]): (router: ConnectRouter) => void {
  return (router) => {
    for (const { service, impl } of services) router.service(service, impl as never);
  };
}
