import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdirSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { packageRoot } from "../src/version.js";
import { type ServerProcess, scratchDir, spawnServer } from "./support/test-server.js";

// A Python client generated from proto/ with grpc_tools.protoc, as docs/API.md#python
// tells a Python user to, calls a real server over gRPC (h2c) with grpcio.
const python = "/usr/bin/python3";
const client = join(packageRoot, "test/python/grpc_client.py");

/** Why the Python gRPC client cannot run here, or undefined when it can. */
function pythonGrpcUnavailable(): string | undefined {
  const probe = spawnSync(python, ["-c", "import grpc, grpc_tools.protoc, google.protobuf"], { encoding: "utf8" });
  return probe.status === 0
    ? undefined
    : `python3 with grpcio and grpc_tools is needed (Debian: python3-grpcio python3-grpc-tools): ${probe.stderr?.trim().split("\n").at(-1) ?? probe.error?.message}`;
}

/**
 * The commands of docs/API.md#python: the openexec protos as they are, and the
 * health and reflection protos under grpc_health/ and grpc_reflection/ (the
 * module paths of the grpcio-health-checking and grpcio-reflection packages),
 * so that no generated module is named grpc.* and shadows grpcio.
 */
export function generatePythonStubs(out: string, stage: string): void {
  const protoc = (includeDir: string, files: string[]) =>
    execFileSync(
      python,
      ["-m", "grpc_tools.protoc", `-I${includeDir}`, `--python_out=${out}`, `--grpc_python_out=${out}`, ...files],
      { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] },
    );
  const protoDir = join(packageRoot, "proto");
  protoc(
    protoDir,
    readdirSync(join(protoDir, "openexec/v1")).map((f) => join(protoDir, "openexec/v1", f)),
  );
  const relocated = [
    ["grpc/health/v1/health.proto", "grpc_health/v1/health.proto"],
    ["grpc/reflection/v1alpha/reflection.proto", "grpc_reflection/v1alpha/reflection.proto"],
  ] as const;
  for (const [from, to] of relocated) {
    mkdirSync(join(stage, to, ".."), { recursive: true });
    copyFileSync(join(protoDir, from), join(stage, to));
  }
  protoc(
    stage,
    relocated.map(([, to]) => join(stage, to)),
  );
}

interface Answer {
  readonly id: string;
  readonly action: string;
  readonly status: string;
  readonly result: unknown;
  readonly approved: boolean;
  readonly replayed: boolean;
  readonly receipt: string;
  readonly signatures: number;
}

interface Observed {
  readonly grpc_module: string;
  readonly echo: Answer;
  readonly counter: readonly Answer[];
  readonly replay: Answer;
  readonly reuse: {
    readonly code: string;
    readonly reason_trailer?: string;
    readonly details?: readonly { type: string; reason?: string; status_code?: number }[];
  };
  readonly verify: boolean;
  readonly verify_tampered: boolean;
  readonly health_check: string;
  readonly health_watch_first: string;
  readonly health_unknown: string;
  readonly reflection_services: readonly string[];
}

describe("a Python gRPC client generated from proto/", () => {
  const missing = pythonGrpcUnavailable();
  const dir = scratchDir("openexec-python-grpc-");
  let server: ServerProcess | undefined;
  let observed: Observed;

  before(async () => {
    if (missing !== undefined) return;
    const stubs = join(dir.path, "stubs");
    mkdirSync(stubs);
    generatePythonStubs(stubs, join(dir.path, "proto-stage"));
    server = await spawnServer({ OPENEXEC_DB_URL: `sqlite:///${join(dir.path, "ledger.db")}` });
    const target = new URL(server.url).host;
    const run = spawnSync(python, [client, stubs, target], {
      encoding: "utf8",
      env: { PATH: process.env.PATH ?? "" },
      timeout: 60_000,
    });
    assert.equal(run.status, 0, `grpc_client.py failed:\n${run.stderr}`);
    observed = JSON.parse(run.stdout) as Observed;
  });
  after(async () => {
    if (server !== undefined) {
      server.child.kill("SIGTERM");
      await server.exited;
    }
    dir.cleanup();
  });

  const requirePython = (t: { skip(message: string): void }): boolean => {
    if (missing === undefined) return true;
    const message = `Python gRPC client unavailable: ${missing}`;
    if (process.env.CI === "true") assert.fail(`${message} (CI=true: .ci/run installs it)`);
    t.skip(message);
    return false;
  };

  it("generates stubs that leave grpcio's own grpc package in place", (t) => {
    if (!requirePython(t)) return;
    assert.ok(!existsSync(join(dir.path, "stubs/grpc")), "no generated module may be named grpc.*");
    assert.ok(existsSync(join(dir.path, "stubs/grpc_health/v1/health_pb2_grpc.py")));
    assert.match(observed.grpc_module, /dist-packages\/grpc\/__init__\.py$/);
  });

  it("executes echo and counter.add over gRPC, with a signed receipt", (t) => {
    if (!requirePython(t)) return;
    assert.equal(observed.echo.status, "EXECUTION_STATUS_EXECUTED");
    assert.deepEqual(observed.echo.result, { echo: { msg: "hello from python" } });
    assert.equal(observed.echo.approved, true);
    assert.equal(observed.echo.replayed, false);
    assert.match(observed.echo.receipt, /^[0-9a-f]{64}$/);
    assert.equal(observed.echo.signatures, 1);
    assert.deepEqual(
      observed.counter.map((a) => a.result),
      [
        { key: "py", value: 2 },
        { key: "py", value: 5 },
      ],
    );
  });

  it("replays the same nonce and request with replayed=true and the stored answer", (t) => {
    if (!requirePython(t)) return;
    assert.equal(observed.replay.replayed, true);
    assert.equal(observed.replay.id, observed.echo.id);
    assert.equal(observed.replay.receipt, observed.echo.receipt);
    assert.deepEqual(observed.replay.result, observed.echo.result);
  });

  it("refuses the same nonce with another payload: ALREADY_EXISTS, the openexec-reason trailer and a decoded ErrorDetail", (t) => {
    if (!requirePython(t)) return;
    assert.equal(observed.reuse.code, "ALREADY_EXISTS");
    assert.equal(observed.reuse.reason_trailer, "nonce_reused");
    assert.deepEqual(observed.reuse.details, [
      { type: "type.googleapis.com/openexec.v1.ErrorDetail", reason: "nonce_reused", status_code: 6 },
    ]);
  });

  it("verifies the receipt with VerifyReceipt, and refuses another result", (t) => {
    if (!requirePython(t)) return;
    assert.equal(observed.verify, true);
    assert.equal(observed.verify_tampered, false);
  });

  it("answers grpc.health.v1 Check and Watch (first message SERVING), NOT_FOUND for an unknown service", (t) => {
    if (!requirePython(t)) return;
    assert.equal(observed.health_check, "SERVING");
    assert.equal(observed.health_watch_first, "SERVING");
    assert.equal(observed.health_unknown, "NOT_FOUND");
  });

  it("lists the served services through gRPC reflection", (t) => {
    if (!requirePython(t)) return;
    assert.deepEqual(observed.reflection_services, [
      "grpc.health.v1.Health",
      "grpc.reflection.v1.ServerReflection",
      "grpc.reflection.v1alpha.ServerReflection",
      "openexec.v1.ExecutionService",
      "openexec.v1.InfoService",
      "openexec.v1.TransparencyLogService",
    ]);
  });
});
