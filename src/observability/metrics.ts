import { Code } from "@connectrpc/connect";
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** How a call arrived: the `protocol` label. */
export type CallProtocol = "rest" | "connect" | "grpc" | "grpc-web";

/** What the ledger and log gauges read when scraped. */
export interface LedgerGauges {
  /** Leaves in the transparency log, as committed. */
  logSize(): Promise<number>;
  /** The newest checkpoint this process has seen (its own or another replica's), and when it first saw it. */
  newestCheckpoint(): { readonly treeSize: number; readonly seenAtMs: number } | undefined;
  /** Ledger commits so far. */
  commitStats(): Promise<{ readonly commits: number; readonly writes: number; readonly seconds: number }>;
}

/**
 * The server's Prometheus metrics (GET /metrics). RPC metrics use the names
 * gRPC users know from grpc-ecosystem/go-grpc-prometheus, with a `protocol`
 * label telling REST, Connect, gRPC and gRPC-web apart (REST paths count
 * under the RPC they bind to). Labels only ever hold bounded values: service
 * and method names, code names, registered action names, reason codes; never
 * a nonce, id, tenant or payload value.
 */
export class ServerMetrics {
  readonly registry = new Registry();
  readonly #started: Counter<"grpc_service" | "grpc_method" | "grpc_type" | "protocol">;
  readonly #handled: Counter<"grpc_service" | "grpc_method" | "grpc_type" | "grpc_code" | "protocol">;
  readonly #handling: Histogram<"grpc_service" | "grpc_method" | "grpc_type" | "protocol">;
  readonly #executions: Counter<"action" | "status">;
  readonly #denials: Counter<"reason">;
  readonly #replays: Counter;
  readonly #inFlight: Gauge;
  readonly #leanUnary: Counter<"outcome">;

  constructor(gauges: LedgerGauges) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#started = new Counter({
      name: "grpc_server_started_total",
      help: "RPCs started on the server.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type", "protocol"],
      registers,
    });
    this.#handled = new Counter({
      name: "grpc_server_handled_total",
      help: "RPCs completed on the server, whatever their outcome.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type", "grpc_code", "protocol"],
      registers,
    });
    this.#handling = new Histogram({
      name: "grpc_server_handling_seconds",
      help: "How long RPCs took on the server, until the answer was ready.",
      labelNames: ["grpc_service", "grpc_method", "grpc_type", "protocol"],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.#executions = new Counter({
      name: "openexec_executions_total",
      help: "Executions answered, first runs and replays, by action and status (executed, failed).",
      labelNames: ["action", "status"],
      registers,
    });
    this.#denials = new Counter({
      name: "openexec_denials_total",
      help: "Recorded denials (refused attempts with a receipt), by reason code.",
      labelNames: ["reason"],
      registers,
    });
    this.#replays = new Counter({
      name: "openexec_replays_total",
      help: "Executions answered from the ledger as replays of an earlier one.",
      registers,
    });
    this.#inFlight = new Gauge({
      name: "openexec_executions_in_flight",
      help: "Execute calls being handled now.",
      registers,
    });
    this.#leanUnary = new Counter({
      name: "openexec_lean_unary_requests_total",
      help: "Unary requests the lean path took: answered there, or read and handed to connect-es (e.g. malformed).",
      labelNames: ["outcome"],
      registers,
    });
    // The ledger commits in its own thread (SQLite) or on the event loop (PostgreSQL): its totals are
    // read when scraped. Mean commit latency = rate(seconds) / rate(commits); mean batch = rate(writes) / rate(commits).
    const ledger = (
      name: string,
      help: string,
      pick: (s: { commits: number; writes: number; seconds: number }) => number,
    ) =>
      new Counter({
        name,
        help,
        registers,
        async collect() {
          const stats = await gauges.commitStats().catch(() => undefined);
          this.reset();
          if (stats !== undefined) this.inc(pick(stats));
        },
      });
    ledger("openexec_ledger_commits_total", "Ledger commits: transactions of one batch of writes.", (s) => s.commits);
    ledger("openexec_ledger_commit_writes_total", "Writes committed, summed over commits.", (s) => s.writes);
    ledger("openexec_ledger_commit_seconds_total", "Time spent committing, summed over commits.", (s) => s.seconds);
    new Gauge({
      name: "openexec_log_size",
      help: "Leaves in the transparency log, as committed.",
      registers,
      async collect() {
        this.set(await gauges.logSize().catch(() => Number.NaN));
      },
    });
    new Gauge({
      name: "openexec_checkpoint_age_seconds",
      help: "Seconds since this process first saw the newest checkpoint (NaN before the first); it grows while the log grows without a new checkpoint.",
      registers,
      collect() {
        const newest = gauges.newestCheckpoint();
        this.set(newest === undefined ? Number.NaN : (Date.now() - newest.seenAtMs) / 1000);
      },
    });
    new Gauge({
      name: "openexec_checkpoint_tree_size",
      help: "Tree size of the newest checkpoint this process has seen.",
      registers,
      collect() {
        this.set(gauges.newestCheckpoint()?.treeSize ?? Number.NaN);
      },
    });
  }

  /** Starts timing one RPC (or times one that started at `started`); the returned function records how it ended. */
  rpcStarted(labels: RpcLabels, started = performance.now()): (code: Code | 0) => void {
    const base = {
      grpc_service: labels.service,
      grpc_method: labels.method,
      grpc_type: labels.type,
      protocol: labels.protocol,
    };
    this.#started.inc(base);
    return (code) => {
      this.#handled.inc({ ...base, grpc_code: grpcCodeName(code) });
      this.#handling.observe(base, (performance.now() - started) / 1000);
    };
  }

  executionStarted(): () => void {
    this.#inFlight.inc();
    return () => this.#inFlight.dec();
  }

  executed(action: string, status: "executed" | "failed", replayed: boolean): void {
    this.#executions.inc({ action, status });
    if (replayed) this.#replays.inc();
  }

  /** A request the lean unary path took (src/transport/lean-unary.ts), and how. */
  leanUnary(outcome: "answered" | "handed_over"): void {
    this.#leanUnary.inc({ outcome });
  }

  denied(reason: string): void {
    this.#denials.inc({ reason });
  }

  /** The Prometheus text exposition of every metric. */
  exposition(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

export interface RpcLabels {
  readonly service: string;
  readonly method: string;
  /** unary, client_stream, server_stream, bidi_stream (go-grpc-prometheus's names). */
  readonly type: string;
  readonly protocol: CallProtocol;
}

/** The gRPC code's name as grpc-go spells it (OK, InvalidArgument, ...), as go-grpc-prometheus labels it. */
export function grpcCodeName(code: Code | 0): string {
  if (code === 0) return "OK";
  const name = Code[code];
  return name === undefined ? "Unknown" : name;
}
