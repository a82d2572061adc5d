/**
 * Execute throughput against a bare-SQLite baseline, in one run.
 *
 *   npm run bench              # a table
 *   npm run bench -- --json    # machine-readable results on stdout
 *   npm run bench -- --scale   # the ledger at 1M executions (bench/scale-bench.ts; BENCH_SCALE_N)
 *
 * Every scenario has its own server, a child process (so the load generator
 * does not share its event loop) with its own fresh SQLite file. All of them
 * start first and are warmed up; then the load moves from one to the next in
 * short slices (BENCH_SLICE_SECONDS), round after round, until each has had
 * BENCH_SECONDS of BENCH_CONCURRENCY requests in flight. Interleaving spreads
 * the machine's slow swings (other tenants, other processes) over every
 * scenario alike. Every request carries a new nonce, so each one is a durable
 * write. Figures are compared as ratios to the baseline of the same run, never
 * as absolute numbers: the machine is small and noisy. See docs/PERFORMANCE.md.
 *
 * The load generator shares the machine's cores with the server, so besides
 * the generated connect-node clients (what callers use) the run also drives
 * OpenExec with the baseline's lean clients ("-raw"), which cost the load
 * generator far less CPU per request and so show the server's own capacity.
 *
 * Environment (all optional):
 *   BENCH_SECONDS         measured seconds per scenario (default 8)
 *   BENCH_WARMUP_SECONDS  unmeasured warm-up per scenario (default 1)
 *   BENCH_CONCURRENCY     requests in flight (default 32)
 *   BENCH_SLICE_SECONDS   length of one turn of load on one scenario (default 2)
 *   BENCH_SCENARIOS       comma-separated subset, e.g. "baseline,grpc" (baseline always runs)
 *   BENCH_CPU_PROF_DIR    write a V8 CPU profile of each OpenExec server child there
 *   BENCH_SERVER_ENV      settings for every OpenExec server, e.g. "OPENEXEC_LEDGER_THREAD=off"
 *   BENCH_SERVER_ROOT     run the OpenExec server from another checkout (with its own node_modules),
 *                         e.g. a git worktree of another commit; the baseline and clients stay these
 */

import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { Agent } from "node:http";
import { connect as http2Connect } from "node:http2";
import { connect } from "node:net";
import { availableParallelism } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import Database from "better-sqlite3";
import { ExecuteRequestSchema, ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { ExecutionStatus } from "../gen/openexec/v1/receipt_pb.js";
import { agentSockets, grpcUnary, type PhaseOptions, percentile, postJson, runPhase, type Send } from "./load.js";
import { type Deployment, PostgresBench } from "./postgres-bench.js";
import {
  installCleanupHandlers,
  machineCpuMs,
  makeScratchDir,
  processCpuMs,
  removeScratchDir,
  type ServerChild,
  spawnServer,
} from "./processes.js";
import { runScaleBench } from "./scale-bench.js";

const packageRoot = fileURLToPath(new URL("..", import.meta.url));
const requestTimeoutMs = 10_000;

interface Scenario {
  readonly name: string;
  readonly description: string;
  /** Starts the server(s) under test on a database in `dir`. */
  readonly start: (dir: string) => Promise<Deployment>;
  /**
   * Builds the client over the servers' URLs (round-robin where there are several); `close`
   * releases its connections. `connections` reports how many it opened.
   */
  readonly client: (urls: readonly string[]) => {
    send: Send;
    connections: () => number | undefined;
    close: () => void;
  };
}

interface ScenarioResult {
  readonly scenario: string;
  readonly description: string;
  /** Successful requests in the measured slices. */
  readonly requests: number;
  readonly errors: number;
  readonly firstError: string | undefined;
  /** Measured seconds, summed over the slices. */
  readonly seconds: number;
  readonly requestsPerSecond: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  /** req/s divided by the baseline's req/s over the same run. */
  readonly ratioToBaseline: number;
  /** The same ratio slice by slice (each against the baseline's slice of that round): 25th and 75th percentile. */
  readonly sliceRatioP25: number;
  readonly sliceRatioP75: number;
  /** Requests of the unmeasured warm-up (durable writes too). */
  readonly warmupRequests: number;
  /** Most HTTP/1.1 connections the client held after a slice (undefined for HTTP/2: one session, multiplexed). */
  readonly connections: number | undefined;
  /** Rows in the ledger after the server stopped, by status: every answered request must be one. */
  readonly rows: Record<string, number>;
  /** CPU time per successful request in the measured slices (ms): the server child, and the load generator. */
  readonly serverCpuMsPerRequest: number;
  readonly generatorCpuMsPerRequest: number;
  /** Cores the server child kept busy on average (1.0 = one core). */
  readonly serverCores: number;
  /** PostgreSQL scenarios: the database's CPU per request (ms) and cores (all postgres processes). */
  readonly databaseCpuMsPerRequest: number | undefined;
  readonly databaseCores: number | undefined;
  /**
   * Noise: cores used by everything but this server and the load generator (other processes, kernel
   * threads such as the file system journal), and cores the hypervisor stole, on average over the
   * measured slices (from /proc/stat; NaN elsewhere).
   */
  readonly otherCores: number;
  readonly stealCores: number;
}

function envNumber(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < min || value > max) {
    throw new Error(`${name} must be a number from ${min} to ${max}; got "${raw}"`);
  }
  return value;
}

function loopbackUrl(base: string, path = ""): URL {
  const url = new URL(path, base);
  if (url.hostname !== "127.0.0.1") throw new Error(`refusing to load anything but 127.0.0.1: ${url.href}`);
  return url;
}

const echoBody = (nonce: string) => JSON.stringify({ action: "echo", payload: { msg: "hello" }, nonce });
const nonceFor = (scenario: string, seq: number) => `bench.${scenario}.${process.pid}.${seq}`;

async function startOpenExec(dir: string): Promise<Deployment> {
  const dbPath = join(dir, "bench.db");
  const server = await spawnOpenExec({ OPENEXEC_DB_URL: `sqlite:///${dbPath}` });
  return sqliteDeployment(server, dbPath);
}

/** `openexec serve` from the measured checkout, on a free loopback port, with `env`. */
export async function spawnOpenExec(env: Record<string, string>): Promise<ServerChild> {
  const serverRoot = process.env.BENCH_SERVER_ROOT || packageRoot;
  const profDir = process.env.BENCH_CPU_PROF_DIR;
  const profile = profDir === undefined || profDir === "" ? [] : ["--cpu-prof", `--cpu-prof-dir=${profDir}`];
  const entry = join(serverRoot, "src/cli/main.ts");
  return spawnServer([...profile, "--import", "tsx", entry, "serve", "--host", "127.0.0.1", "--port", "0"], {
    cwd: serverRoot,
    // As deployed: info level, so the access log (one line per request) and /metrics are on while
    // measuring; no drain period, so that servers stop at once when the run ends.
    env: {
      PATH: process.env.PATH ?? "",
      OPENEXEC_LOG_LEVEL: "info",
      OPENEXEC_DRAIN_MS: "0",
      ...env,
      ...extraServerEnv(),
    },
  });
}

/** One server on its own SQLite file; its rows are counted from the file once it stopped. */
function sqliteDeployment(server: ServerChild, dbPath: string): Deployment {
  return {
    servers: [server],
    rows: async () => countRows(dbPath),
    databaseCpuMs: () => undefined,
    close: async () => {},
  };
}

/** BENCH_SERVER_ENV="NAME=value,NAME=value": settings for every OpenExec server of the run. */
function extraServerEnv(): Record<string, string> {
  const raw = process.env.BENCH_SERVER_ENV ?? "";
  return Object.fromEntries(
    raw
      .split(",")
      .filter((pair) => pair.includes("="))
      .map((pair) => [pair.slice(0, pair.indexOf("=")).trim(), pair.slice(pair.indexOf("=") + 1).trim()]),
  );
}

async function startBaseline(dir: string): Promise<Deployment> {
  const dbPath = join(dir, "baseline.db");
  const server = await spawnServer(["--import", "tsx", join(packageRoot, "bench/baseline-server.ts"), dbPath], {
    cwd: packageRoot,
    env: { PATH: process.env.PATH ?? "" },
  });
  return sqliteDeployment(server, dbPath);
}

/**
 * Plain JSON POSTs over HTTP/1.1 keep-alive: the load generator's cheapest client.
 * `check` throws when an answer is not the expected success.
 */
function rawJsonClient(
  name: string,
  path: string,
  headers: Record<string, string>,
  concurrency: number,
  check: (answer: unknown) => void,
) {
  return (bases: readonly string[]) => {
    const urls = bases.map((base) => loopbackUrl(base, path));
    const agent = new Agent({ keepAlive: true, maxSockets: concurrency * 2 });
    const send: Send = async (seq) => {
      const url = urls[seq % urls.length] as URL;
      check(await postJson(agent, url, echoBody(nonceFor(name, seq)), headers, requestTimeoutMs));
    };
    return { send, connections: () => agentSockets(agent), close: () => agent.destroy() };
  };
}

function scenarios(concurrency: number, postgres: PostgresBench | undefined): Scenario[] {
  const restCheck = (answer: unknown) => {
    if ((answer as { status?: unknown }).status !== "executed") throw new Error("answer not executed");
  };
  const onPostgres: Scenario[] =
    postgres === undefined
      ? []
      : [1, 2].map((replicas) => ({
          name: `pg-rest-${replicas}`,
          description: `OpenExec REST /execute, ${replicas} replica${replicas > 1 ? "s" : ""} on one PostgreSQL (${postgres.version}), raw HTTP/1.1 JSON${replicas > 1 ? ", round-robin" : ""}`,
          start: () => postgres.deploy(replicas, spawnOpenExec),
          client: rawJsonClient(`pg-rest-${replicas}`, "/execute", {}, concurrency, restCheck),
        }));
  return [
    {
      name: "baseline",
      description: "bare node:http + one better-sqlite3 INSERT per request (WAL, synchronous=FULL), raw HTTP/1.1 JSON",
      start: startBaseline,
      client: rawJsonClient("baseline", "/execute", {}, concurrency, (answer) => {
        if (typeof (answer as { receipt?: unknown }).receipt !== "string") throw new Error("answer without receipt");
      }),
    },
    {
      name: "connect-json",
      description: "OpenExec Execute, Connect JSON over HTTP/1.1, generated client (connect-node)",
      start: startOpenExec,
      client: ([base = ""]) => {
        loopbackUrl(base);
        const agent = new Agent({ keepAlive: true, maxSockets: concurrency * 2 });
        const client = createClient(
          ExecutionService,
          createConnectTransport({ baseUrl: base, httpVersion: "1.1", useBinaryFormat: false, nodeOptions: { agent } }),
        );
        const send: Send = async (seq) => {
          const response = await client.execute(
            { action: "echo", payload: { msg: "hello" }, nonce: nonceFor("connect-json", seq) },
            { timeoutMs: requestTimeoutMs },
          );
          if (response.status !== ExecutionStatus.EXECUTED || response.replayed) {
            throw new Error(`unexpected answer: status ${response.status}, replayed ${response.replayed}`);
          }
        };
        return { send, connections: () => agentSockets(agent), close: () => agent.destroy() };
      },
    },
    {
      name: "grpc",
      description: "OpenExec Execute, gRPC over h2c (one HTTP/2 session), generated client (connect-node)",
      start: startOpenExec,
      client: ([base = ""]) => {
        const { port } = loopbackUrl(base);
        // TCP_NODELAY, as gRPC clients set it (grpc-go, grpc-core): Node's http2.connect does not, and Nagle
        // would hold back a request's DATA frame behind its HEADERS frame until the server's delayed ACK.
        const sessionManager = new Http2SessionManager(base, undefined, {
          createConnection: () => connect({ host: "127.0.0.1", port: Number(port), noDelay: true }),
        });
        const client = createClient(ExecutionService, createGrpcTransport({ baseUrl: base, sessionManager }));
        const send: Send = async (seq) => {
          const response = await client.execute(
            { action: "echo", payload: { msg: "hello" }, nonce: nonceFor("grpc", seq) },
            { timeoutMs: requestTimeoutMs },
          );
          if (response.status !== ExecutionStatus.EXECUTED || response.replayed) {
            throw new Error(`unexpected answer: status ${response.status}, replayed ${response.replayed}`);
          }
        };
        return { send, connections: () => undefined, close: () => sessionManager.abort() };
      },
    },
    {
      name: "rest-raw",
      description: "OpenExec REST POST /execute (the original's path), sent with the baseline's raw client",
      start: startOpenExec,
      client: rawJsonClient("rest-raw", "/execute", {}, concurrency, restCheck),
    },
    {
      name: "connect-json-raw",
      description: "OpenExec Execute, Connect JSON over HTTP/1.1, sent with the baseline's raw client",
      start: startOpenExec,
      client: rawJsonClient(
        "connect-json-raw",
        "/openexec.v1.ExecutionService/Execute",
        { "connect-protocol-version": "1" },
        concurrency,
        (answer) => {
          const { status, replayed } = answer as { status?: unknown; replayed?: unknown };
          if (status !== "EXECUTION_STATUS_EXECUTED" || replayed === true) {
            throw new Error(`unexpected answer: status ${String(status)}, replayed ${String(replayed)}`);
          }
        },
      ),
    },
    {
      name: "grpc-raw",
      description: "OpenExec Execute, gRPC over h2c (one HTTP/2 session), lean node:http2 client",
      start: startOpenExec,
      client: ([base = ""]) => {
        const { port } = loopbackUrl(base);
        const session = http2Connect(base, {
          createConnection: () => connect({ host: "127.0.0.1", port: Number(port), noDelay: true }),
        });
        session.on("error", () => {}); // each call reports its own failure
        const send: Send = async (seq) => {
          const request = create(ExecuteRequestSchema, {
            action: "echo",
            payload: { msg: "hello" },
            nonce: nonceFor("grpc-raw", seq),
          });
          const message = toBinary(ExecuteRequestSchema, request);
          await grpcUnary(session, "/openexec.v1.ExecutionService/Execute", message, requestTimeoutMs);
        };
        return { send, connections: () => undefined, close: () => session.destroy() };
      },
    },
    ...onPostgres,
  ];
}

/** The revision measured: the commit, and whether the work tree differed from it. */
function revision(root: string): { commit: string | undefined; dirty: boolean | undefined } {
  try {
    const git = (...args: string[]) => execFileSync("git", args, { cwd: root, encoding: "utf8", stdio: "pipe" }).trim();
    return {
      commit: git("rev-parse", "--short", "HEAD"),
      dirty: git("status", "--porcelain", "--", "src", "gen") !== "",
    };
  } catch {
    return { commit: undefined, dirty: undefined };
  }
}

function countRows(dbPath: string): Record<string, number> {
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const rows = db
      .prepare<[], { status: string; n: number }>("SELECT status, count(*) AS n FROM executions GROUP BY status")
      .all();
    return Object.fromEntries(rows.map((row) => [row.status, row.n]));
  } finally {
    db.close();
  }
}

/** A scenario's server and client while the run lasts, and what its slices have measured so far. */
class Running {
  seq = 0;
  readonly latencies: number[] = [];
  readonly sliceRates: number[] = [];
  errors = 0;
  firstError: string | undefined;
  seconds = 0;
  warmupRequests = 0;
  /** Most HTTP/1.1 connections the client held at the end of a slice; undefined for HTTP/2. */
  connections: number | undefined;
  readonly cpu = { server: 0, generator: 0, machineBusy: 0, steal: 0, database: 0 };
  readonly client: ReturnType<Scenario["client"]>;
  #stopped = false;

  constructor(
    readonly scenario: Scenario,
    readonly deployment: Deployment,
  ) {
    this.client = scenario.client(deployment.servers.map((server) => server.url));
  }

  /** CPU time (ms) of every server of the scenario so far; undefined when one cannot be read. */
  #serverCpuMs(): number | undefined {
    let total = 0;
    for (const server of this.deployment.servers) {
      const ms = processCpuMs(server.child.pid);
      if (ms === undefined) return undefined;
      total += ms;
    }
    return total;
  }

  nextSeq = (): number => this.seq++;

  async warmUp(load: PhaseOptions): Promise<void> {
    const phase = await runPhase(this.client.send, load, this.nextSeq);
    this.warmupRequests += phase.latencies.length;
    this.firstError ??= phase.firstError;
  }

  /** One measured slice, with the CPU time it cost. */
  async slice(load: PhaseOptions): Promise<void> {
    const serverStart = this.#serverCpuMs();
    const databaseStart = this.deployment.databaseCpuMs();
    const generatorStart = process.cpuUsage();
    const machineStart = machineCpuMs();
    const phase = await runPhase(this.client.send, load, this.nextSeq);
    const serverEnd = this.#serverCpuMs();
    const databaseEnd = this.deployment.databaseCpuMs();
    this.cpu.database +=
      databaseStart !== undefined && databaseEnd !== undefined ? databaseEnd - databaseStart : Number.NaN;
    const generator = process.cpuUsage(generatorStart);
    const machineEnd = machineCpuMs();
    this.cpu.server += serverStart !== undefined && serverEnd !== undefined ? serverEnd - serverStart : Number.NaN;
    this.cpu.generator += (generator.user + generator.system) / 1000;
    this.cpu.machineBusy +=
      machineStart !== undefined && machineEnd !== undefined ? machineEnd.busy - machineStart.busy : Number.NaN;
    this.cpu.steal +=
      machineStart !== undefined && machineEnd !== undefined ? machineEnd.steal - machineStart.steal : Number.NaN;
    const connections = this.client.connections();
    if (connections !== undefined) this.connections = Math.max(this.connections ?? 0, connections);
    for (const latency of phase.latencies) this.latencies.push(latency);
    this.sliceRates.push(phase.latencies.length / phase.seconds);
    this.errors += phase.errors;
    this.firstError ??= phase.firstError;
    this.seconds += phase.seconds;
  }

  /** Closes the client and stops the server; says so when the server did not stop cleanly. */
  async stop(log: (message: string) => void): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.client.close();
    for (const server of this.deployment.servers) {
      const code = await server.stop();
      if (code !== 0) log(`bench: ${this.scenario.name} server exited with ${code}:\n${server.stderr()}`);
    }
  }

  result(baseline: Running | undefined): ScenarioResult {
    const sorted = Float64Array.from(this.latencies).sort();
    const requests = sorted.length;
    const requestsPerSecond = requests / this.seconds;
    const baselineRate = baseline === undefined ? Number.NaN : baseline.latencies.length / baseline.seconds;
    const sliceRatios = this.sliceRates
      .map((rate, i) => rate / (baseline?.sliceRates[i] ?? Number.NaN))
      .filter((ratio) => Number.isFinite(ratio))
      .sort((a, b) => a - b);
    const { server, generator, machineBusy, steal, database } = this.cpu;
    const measuresDatabase = this.deployment.databaseCpuMs() !== undefined;
    return {
      scenario: this.scenario.name,
      description: this.scenario.description,
      requests,
      errors: this.errors,
      firstError: this.firstError,
      seconds: this.seconds,
      requestsPerSecond,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
      maxMs: percentile(sorted, 1),
      ratioToBaseline: requestsPerSecond / baselineRate,
      sliceRatioP25: percentile(sliceRatios, 0.25),
      sliceRatioP75: percentile(sliceRatios, 0.75),
      warmupRequests: this.warmupRequests,
      connections: this.connections,
      rows: {},
      serverCpuMsPerRequest: server / requests,
      generatorCpuMsPerRequest: generator / requests,
      serverCores: server / 1000 / this.seconds,
      databaseCpuMsPerRequest: measuresDatabase ? database / requests : undefined,
      databaseCores: measuresDatabase ? database / 1000 / this.seconds : undefined,
      otherCores:
        Math.max(0, machineBusy - steal - server - generator - (measuresDatabase ? database : 0)) / 1000 / this.seconds,
      stealCores: steal / 1000 / this.seconds,
    };
  }
}

function formatTable(results: readonly ScenarioResult[]): string {
  const header = [
    "scenario",
    "requests",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "vs baseline",
    "per-slice p25-p75",
    "server CPU ms/req",
    "db CPU ms/req",
    "loadgen CPU ms/req",
    "other+steal cores",
    "conns",
  ];
  const rows = results.map((r) => [
    r.scenario,
    String(r.requests),
    r.requestsPerSecond.toFixed(0),
    r.p50Ms.toFixed(1),
    r.p99Ms.toFixed(1),
    String(r.errors),
    `${r.ratioToBaseline.toFixed(2)}x`,
    `${r.sliceRatioP25.toFixed(2)}-${r.sliceRatioP75.toFixed(2)}`,
    r.serverCpuMsPerRequest.toFixed(2),
    r.databaseCpuMsPerRequest === undefined ? "-" : r.databaseCpuMsPerRequest.toFixed(2),
    r.generatorCpuMsPerRequest.toFixed(2),
    (r.otherCores + r.stealCores).toFixed(2),
    r.connections === undefined ? "h2" : String(r.connections),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join("  ");
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...rows.map(line)].join("\n");
}

async function main(argv: readonly string[]): Promise<number> {
  const json = argv.includes("--json");
  const unknown = argv.filter((arg) => arg !== "--json" && arg !== "--scale");
  if (unknown.length > 0) {
    process.stderr.write(`usage: npm run bench [-- --json | --scale]\nunknown arguments: ${unknown.join(" ")}\n`);
    return 2;
  }
  if (argv.includes("--scale")) {
    await runScaleBench();
    return 0;
  }
  const concurrency = envNumber("BENCH_CONCURRENCY", 32, 1, 1024);
  const warmupMs = envNumber("BENCH_WARMUP_SECONDS", 1, 0, 60) * 1000;
  const durationMs = envNumber("BENCH_SECONDS", 8, 0.1, 600) * 1000;
  const sliceMs = Math.min(durationMs, envNumber("BENCH_SLICE_SECONDS", 2, 0.1, 60) * 1000);
  const rounds = Math.ceil(durationMs / sliceMs);
  const phase = (ms: number): PhaseOptions => ({
    concurrency,
    durationMs: ms,
    maxRequests: 1_000_000,
    maxErrors: 1000,
  });
  const only = (process.env.BENCH_SCENARIOS ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s !== "");
  const postgres = await PostgresBench.connect((message) => process.stderr.write(`${message}\n`));
  const all = scenarios(concurrency, postgres);
  const unknownScenarios = only.filter((name) => !all.some((s) => s.name === name));
  if (unknownScenarios.length > 0) {
    throw new Error(
      `unknown BENCH_SCENARIOS ${unknownScenarios.join(", ")}; known: ${all.map((s) => s.name).join(", ")}`,
    );
  }
  const selected = all.filter((s) => s.name === "baseline" || only.length === 0 || only.includes(s.name));

  const log = (message: string) => process.stderr.write(`${message}\n`);
  log(
    `bench: ${selected.length} scenarios, concurrency ${concurrency}, ${warmupMs / 1000} s warm-up, then ` +
      `${rounds} rounds of ${sliceMs / 1000} s slices each`,
  );
  const serverRoot = process.env.BENCH_SERVER_ROOT || packageRoot;
  const measuredRevision = { root: serverRoot, ...revision(serverRoot) };
  log(
    `bench: OpenExec from ${serverRoot}, commit ${measuredRevision.commit ?? "unknown"}` +
      (measuredRevision.dirty ? " with uncommitted changes in src/ or gen/" : ""),
  );
  const root = makeScratchDir("openexec-bench-");
  const running: Running[] = [];
  let results: ScenarioResult[];
  try {
    for (const scenario of selected) {
      const dir = join(root, scenario.name);
      mkdirSync(dir);
      const deployment = await scenario.start(dir);
      // The pids, to attach strace or perf to while it runs.
      for (const server of deployment.servers) {
        log(`bench: ${scenario.name} server pid ${server.child.pid} at ${server.url}`);
      }
      running.push(new Running(scenario, deployment));
    }
    if (warmupMs > 0) for (const r of running) await r.warmUp(phase(warmupMs));
    for (let round = 0; round < rounds; round++) {
      // Rotate who goes first, so no scenario always follows the same one.
      for (let i = 0; i < running.length; i++) {
        await running[(round + i) % running.length]?.slice(phase(sliceMs));
      }
      log(`bench: round ${round + 1}/${rounds}`);
    }
    const baseline = running.find((r) => r.scenario.name === "baseline");
    results = running.map((r) => r.result(baseline));
    // Every answered request must be a durable row; fewer rows would mean the benchmark measured no-ops.
    for (const [i, r] of running.entries()) {
      await r.stop(log);
      const result = results[i];
      if (result === undefined) continue;
      const rows = await r.deployment.rows();
      results[i] = { ...result, rows };
      const answered = result.requests + result.warmupRequests;
      if ((rows.executed ?? 0) < answered) {
        log(`bench: WARNING ${result.scenario}: ${rows.executed ?? 0} executed rows for ${answered} answers`);
      }
    }
  } finally {
    for (const r of running) {
      await r.stop(log);
      await r.deployment.close().catch((error: unknown) => log(`bench: ${r.scenario.name}: cleanup failed: ${error}`));
    }
    removeScratchDir(root);
  }
  for (const r of results) {
    log(
      `bench: ${r.scenario}: ${r.requestsPerSecond.toFixed(0)} req/s, p50 ${r.p50Ms.toFixed(1)} ms, ` +
        `p99 ${r.p99Ms.toFixed(1)} ms, ${r.errors} errors; server ${r.serverCores.toFixed(2)} cores, ` +
        `other ${r.otherCores.toFixed(2)}, steal ${r.stealCores.toFixed(2)}` +
        (r.firstError === undefined ? "" : ` (first error: ${r.firstError})`),
    );
  }

  if (json) {
    const environment = {
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      cpus: availableParallelism(),
      revision: measuredRevision,
    };
    const settings = { concurrency, warmupMs, durationMs, sliceMs, rounds };
    process.stdout.write(`${JSON.stringify({ environment, settings, results }, null, 2)}\n`);
  } else {
    process.stdout.write(`${formatTable(results)}\n`);
  }
  return 0;
}

installCleanupHandlers();
main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
