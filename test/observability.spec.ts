import assert from "node:assert/strict";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { gzipSync } from "node:zlib";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { type LoggedServer, startLoggedServer } from "./support/captured-log.js";
import { type ProtocolName, postJson, transportFor } from "./support/clients.js";
import { connectCall, envelope, grpcCall, grpcWebCall } from "./support/raw-rpc.js";

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

/** A parser of the Prometheus text exposition format (0.0.4), as a scraper reads it. */
function parseExposition(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(match, `not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const pair of (match[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = (pair[2] as string).replace(/\\(.)/g, "$1");
    }
    samples.push({ name: match[1] as string, labels, value: Number(match[3]) });
  }
  return samples;
}

function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const found = samples.filter(
    (s) => s.name === name && Object.entries(labels).every(([key, v]) => s.labels[key] === v),
  );
  return found.reduce((sum, s) => sum + s.value, 0);
}

const execute = { grpc_service: "openexec.v1.ExecutionService", grpc_method: "Execute", grpc_type: "unary" };
const secret = "payload-value-that-must-never-be-logged";

describe("metrics and access logs, over REST, Connect, gRPC and gRPC-web", () => {
  let logged: LoggedServer;
  let url: string;
  let metricsText: string;
  let samples: Sample[];
  const nonces = ["obs-rest", "obs-connect", "obs-grpc", "obs-grpc-web"];

  before(async () => {
    logged = await startLoggedServer({ OPENEXEC_LEDGER_THREAD: "off", OPENEXEC_ALLOWED_ACTIONS: "echo" });
    url = logged.server.url;
    const payload = { msg: secret };
    const rest = await postJson(`${url}/execute`, { action: "echo", payload, nonce: nonces[0] });
    assert.equal(rest.status, 200);
    const calls: [ProtocolName, string][] = [
      ["connect-json", nonces[1] as string],
      ["grpc", nonces[2] as string],
      ["grpc-web", nonces[3] as string],
    ];
    for (const [protocol, nonce] of calls) {
      const client = createClient(ExecutionService, transportFor(protocol, url));
      const answer = await client.execute({ action: "echo", payload, nonce });
      assert.equal(answer.replayed, false);
    }
    // A replay (REST), a reused nonce (gRPC) and a recorded denial (an action off the allow-list, Connect).
    assert.equal((await postJson(`${url}/execute`, { action: "echo", payload, nonce: nonces[0] })).body.replayed, true);
    await assert.rejects(
      createClient(ExecutionService, transportFor("grpc", url)).execute({
        action: "echo",
        payload: { other: 1 },
        nonce: nonces[1] as string,
      }),
      (error: unknown) => error instanceof ConnectError && error.code === Code.AlreadyExists,
    );
    await assert.rejects(
      createClient(ExecutionService, transportFor("connect-json", url)).execute({
        action: "counter.add",
        payload: { key: "k", delta: 1 },
        nonce: "obs-denied",
      }),
      (error: unknown) => error instanceof ConnectError && error.code === Code.PermissionDenied,
    );
    const health = await fetch(`${url}/health`, {
      headers: { traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" },
    });
    assert.equal(health.status, 200);
    const metrics = await fetch(`${url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    metricsText = await metrics.text();
    samples = parseExposition(metricsText);
  });
  after(() => logged.close());

  it("counts each RPC under its service, method, code and protocol, REST under the RPC it binds to", () => {
    assert.equal(value(samples, "grpc_server_handled_total", { ...execute, protocol: "rest", grpc_code: "OK" }), 2);
    for (const protocol of ["connect", "grpc", "grpc-web"]) {
      assert.equal(
        value(samples, "grpc_server_started_total", { ...execute, protocol }),
        protocol === "grpc-web" ? 1 : 2,
        protocol,
      );
    }
    assert.equal(
      value(samples, "grpc_server_handled_total", { ...execute, protocol: "grpc", grpc_code: "AlreadyExists" }),
      1,
    );
    assert.equal(
      value(samples, "grpc_server_handled_total", { ...execute, protocol: "connect", grpc_code: "PermissionDenied" }),
      1,
    );
    assert.equal(value(samples, "grpc_server_handling_seconds_count", { ...execute }), 7);
    assert.equal(
      value(samples, "grpc_server_handled_total", {
        grpc_service: "openexec.v1.InfoService",
        grpc_method: "GetHealth",
        protocol: "rest",
        grpc_code: "OK",
      }),
      1,
    );
  });

  it("counts executions by action and status, replays and recorded denials by reason", () => {
    assert.equal(value(samples, "openexec_executions_total", { action: "echo", status: "executed" }), 5);
    assert.equal(value(samples, "openexec_replays_total"), 1);
    assert.equal(value(samples, "openexec_denials_total", { reason: "action_not_allowed" }), 1);
    assert.equal(value(samples, "openexec_executions_in_flight"), 0);
    assert.ok(value(samples, "openexec_log_size") >= 5, "four executions and a denial are leaves");
    assert.ok(value(samples, "openexec_ledger_commits_total") >= 5);
    assert.ok(value(samples, "openexec_ledger_commit_writes_total") >= 5);
    assert.ok(value(samples, "process_cpu_seconds_total") > 0, "Node's default process metrics");
  });

  it("never puts a nonce, an id or a payload value in a label", () => {
    for (const sample of samples) {
      for (const label of Object.values(sample.labels)) {
        assert.ok(!nonces.some((nonce) => label.includes(nonce)), `${sample.name} has a nonce label ${label}`);
        assert.ok(!label.includes(secret));
        assert.doesNotMatch(label, /^[0-9a-f]{8}-[0-9a-f]{4}-/, `${sample.name} has an id label`);
      }
    }
    assert.ok(!metricsText.includes("obs-denied"));
  });

  it("writes one access-log line per request: protocol, RPC, status, code, reason, execution id, trace id", () => {
    const lines = logged.lines().filter((line) => line.msg === "request");
    const byPath = (path: string) => lines.filter((line) => line.path === path);
    // 2 REST executes, 3 RPC executes, 1 reused, 1 denied, /health, /metrics (its own line lands as it closes).
    assert.ok(lines.length >= 8, `${lines.length} access lines`);
    const rest = byPath("/execute");
    assert.equal(rest.length, 2);
    for (const line of rest) {
      assert.equal(line.protocol, "rest");
      assert.equal(line.rpc, "openexec.v1.ExecutionService/Execute");
      assert.equal(line.status, 200);
      assert.equal(line.code, "ok");
      assert.match(String(line.execution_id), /^[0-9a-f-]{36}$/);
      assert.match(String(line.receipt), /^[0-9a-f]{64}$/);
      assert.equal(typeof line.duration_ms, "number");
    }
    const rpc = byPath("/openexec.v1.ExecutionService/Execute");
    assert.deepEqual(rpc.map((line) => line.protocol).sort(), ["connect", "connect", "grpc", "grpc", "grpc-web"]);
    const reused = rpc.find((line) => line.reason === "nonce_reused");
    assert.equal(reused?.protocol, "grpc");
    assert.equal(reused?.code, "already_exists");
    const denied = rpc.find((line) => line.reason === "action_not_allowed");
    assert.equal(denied?.code, "permission_denied");
    assert.match(String(denied?.execution_id), /^[0-9a-f-]{36}$/, "a recorded denial names its attempt");
    const health = byPath("/health")[0];
    assert.equal(health?.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert.equal(health?.rpc, "openexec.v1.InfoService/GetHealth");
    assert.ok(!logged.text().includes(secret), "no payload value in the log");
  });

  it("logs no trace id from an invalid traceparent (W3C Trace Context), and a later version's by its first fields", async () => {
    const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    const parent = "00f067aa0ba902b7";
    const cases: Array<[string, string | undefined]> = [
      [`00-${trace.toUpperCase()}-${parent}-01`, undefined],
      [`ff-${trace}-${parent}-01`, undefined],
      [`00-${trace}-${"0".repeat(16)}-01`, undefined],
      [`00-${trace}-${parent}-01-extra`, undefined],
      [`cc-${trace}-${parent}-01-extra`, trace],
    ];
    const url = logged.server.url;
    for (const [index, [traceparent]] of cases.entries()) {
      assert.equal((await fetch(`${url}/trace-case-${index}`, { headers: { traceparent } })).status, 404);
    }
    for (const [index, [traceparent, expected]] of cases.entries()) {
      let line: Record<string, unknown> | undefined;
      for (let attempt = 0; attempt < 100 && line === undefined; attempt++) {
        line = logged.lines().find((l) => l.msg === "request" && l.path === `/trace-case-${index}`);
        if (line === undefined) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.ok(line !== undefined, `an access-log line for ${traceparent}`);
      assert.equal(line.trace_id, expected, traceparent);
    }
  });
});

describe("refusals before the method runs", () => {
  it("count under the method with their code and are logged with their reason, on every protocol", async () => {
    const logged = await startLoggedServer({ OPENEXEC_LEDGER_THREAD: "off" });
    try {
      const { url } = logged.server;
      const path = "/openexec.v1.ExecutionService/Execute";
      // An unknown field (JSON), a field with another wire type and a truncated message (binary).
      const rpcAnswers = [
        await connectCall(url, path, "application/json", '{"action":"echo","nonce":"n","bogus":1}'),
        await connectCall(url, path, "application/json", '{"action":'),
        await connectCall(url, path, "application/proto", Uint8Array.of(0x0a, 0x05, 0x65)),
        await grpcCall(url, path, "application/grpc", envelope(Uint8Array.of(0x08, 0x01))),
        await grpcWebCall(url, path, "application/grpc-web+proto", envelope(Uint8Array.of(0x0a, 0x05, 0x65))),
      ];
      assert.deepEqual(
        rpcAnswers.map((answer) => answer.code),
        Array(5).fill("invalid_argument"),
      );
      assert.equal((await postJson(`${url}/execute`, { action: "echo", nonce: "n", bogus: 1 })).status, 400);
      const samples = parseExposition(await (await fetch(`${url}/metrics`)).text());
      const invalid = (protocol: string) =>
        value(samples, "grpc_server_handled_total", { ...execute, protocol, grpc_code: "InvalidArgument" });
      assert.deepEqual(
        ["connect", "grpc", "grpc-web", "rest"].map((protocol) => [protocol, invalid(protocol)]),
        [
          ["connect", 3],
          ["grpc", 1],
          ["grpc-web", 1],
          ["rest", 1],
        ],
      );
      assert.equal(value(samples, "grpc_server_started_total", { ...execute }), 6);
      const lines = logged.lines().filter((line) => line.msg === "request" && line.path !== "/metrics");
      assert.equal(lines.length, 6);
      for (const line of lines) {
        assert.equal(line.rpc, "openexec.v1.ExecutionService/Execute");
        assert.equal(line.code, "invalid_argument");
        assert.match(String(line.reason), /^(field_invalid|body_malformed)$/);
      }
    } finally {
      await logged.close();
    }
  });
});

describe("many calls at once through connect-es", () => {
  it("make Node print no warning (nothing but the JSON log reaches stderr)", async () => {
    const logged = await startLoggedServer({ OPENEXEC_LEDGER_THREAD: "off", OPENEXEC_DRAIN_MS: "0" });
    const warnings: Error[] = [];
    const onWarning = (warning: Error) => warnings.push(warning);
    process.on("warning", onWarning);
    const session = http2.connect(logged.server.url);
    try {
      // Compressed requests are connect-es's alone (the lean path takes plain ones): 40 in flight on one session.
      const statuses = await Promise.all(
        Array.from(
          { length: 40 },
          (_, i) =>
            new Promise<number>((resolve, reject) => {
              const stream = session.request({
                ":method": "POST",
                ":path": "/openexec.v1.ExecutionService/Execute",
                "content-type": "application/json",
                "content-encoding": "gzip",
              });
              stream.on("response", (headers) => resolve(Number(headers[":status"])));
              stream.on("error", reject);
              stream.resume();
              stream.end(gzipSync(JSON.stringify({ action: "echo", payload: { i }, nonce: `many-at-once-${i}` })));
            }),
        ),
      );
      assert.deepEqual(statuses, Array(40).fill(200));
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(
        warnings.map((warning) => `${warning.name}: ${warning.message}`),
        [],
      );
    } finally {
      session.close();
      process.off("warning", onWarning);
      await logged.close();
    }
  });
});

describe("the REST bindings' calls", () => {
  it("leave nothing behind per call (no listener piles up on a shared signal)", async () => {
    const logged = await startLoggedServer({ OPENEXEC_LEDGER_THREAD: "off", OPENEXEC_ACCESS_LOG: "off" });
    const warnings: string[] = [];
    const onWarning = (warning: Error) => warnings.push(warning.name);
    process.on("warning", onWarning);
    try {
      for (let i = 0; i < 30; i++) {
        assert.equal((await fetch(`${logged.server.url}/health`)).status, 200);
        const answer = await postJson(`${logged.server.url}/execute`, {
          action: "echo",
          payload: { i },
          nonce: `leak-${i}`,
        });
        assert.equal(answer.status, 200);
      }
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings, []);
      assert.equal(logged.lines().filter((line) => line.msg === "request").length, 0, "OPENEXEC_ACCESS_LOG=off");
    } finally {
      process.off("warning", onWarning);
      await logged.close();
    }
  });
});

describe("OPENEXEC_METRICS_PORT", () => {
  it("serves /metrics on its own port and not on the main one", async () => {
    const logged = await startLoggedServer({ OPENEXEC_LEDGER_THREAD: "off", OPENEXEC_METRICS_PORT: "0" });
    try {
      const line = logged.lines().find((l) => l.msg === "metrics listening");
      const address = String(line?.address);
      assert.match(address, /^127\.0\.0\.1:\d+$/);
      const own = await fetch(`http://${address}/metrics`);
      assert.equal(own.status, 200);
      assert.match(await own.text(), /^# HELP /m);
      const main = await fetch(`${logged.server.url}/metrics`);
      assert.equal(main.status, 404);
      const elsewhere = await fetch(`http://${address}/execute`);
      assert.equal(elsewhere.status, 404);
    } finally {
      await logged.close();
    }
  });
});
