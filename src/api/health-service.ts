import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import { type Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import type { ServiceFacts } from "./service-facts.js";

/**
 * grpc.health.v1.Health for probes (grpc-health-probe, Kubernetes, Envoy).
 * "" (the whole server) and each served service name are known; SERVING
 * exactly when /ready would answer 200.
 */
export function createHealthService(facts: ServiceFacts, serviceNames: readonly string[]): ServiceImpl<typeof Health> {
  const known = new Set(["", ...serviceNames]);
  const statusNow = async () =>
    (await facts.readiness()) === undefined ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  return {
    async check(request) {
      if (!known.has(request.service)) throw new ConnectError(`unknown service "${request.service}"`, Code.NotFound);
      return { status: await statusNow() };
    },
    async list() {
      const status = await statusNow();
      return { statuses: Object.fromEntries([...known].map((name) => [name, { status }])) };
    },
    async *watch(request, context) {
      if (!known.has(request.service)) {
        yield { status: ServingStatus.SERVICE_UNKNOWN };
        await new Promise((resolve) => context.signal.addEventListener("abort", resolve, { once: true }));
        return;
      }
      // Send the status now and on every change: checked once a second, and at once when a stop begins.
      let last: ServingStatus | undefined;
      while (!context.signal.aborted) {
        const status = await statusNow();
        if (status !== last) {
          last = status;
          yield { status };
        }
        await nextCheck(facts, context.signal);
      }
    },
  };
}

/** Resolves after a second, when readiness changes (a stop began), or when the stream ends. */
function nextCheck(facts: ServiceFacts, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      facts.readinessChanges?.off("change", done);
      resolve();
    };
    const timer = setTimeout(done, 1000);
    signal.addEventListener("abort", done, { once: true });
    facts.readinessChanges?.on("change", done);
  });
}
