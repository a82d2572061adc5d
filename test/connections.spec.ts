import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import http2 from "node:http2";
import { connect, type Socket } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { InfoService } from "../gen/openexec/v1/info_pb.js";
import { ExecutionStatus } from "../gen/openexec/v1/receipt_pb.js";
import { ConfigError, loadServerConfig } from "../src/config/server-config.js";
import { defaultConnectionLimits } from "../src/transport/http-server.js";
import { packageRoot } from "../src/version.js";
import { clientFor } from "./support/clients.js";
import { nodeArgsFor } from "./support/entry.js";
import { scratchDir } from "./support/test-server.js";

/** The process's file limit: fewer descriptors than the attack below opens sockets. */
const fileLimit = 256;
/** Short limits, so the test runs in seconds; each bound below adds a generous margin. */
const limits = {
  OPENEXEC_HEADERS_TIMEOUT_MS: "1000",
  OPENEXEC_REQUEST_TIMEOUT_MS: "2000",
  OPENEXEC_KEEP_ALIVE_TIMEOUT_MS: "1000",
  OPENEXEC_H2_IDLE_TIMEOUT_MS: "2000",
  OPENEXEC_MAX_CONNECTIONS: "150",
  OPENEXEC_H2_MAX_STREAMS: "10",
};
/** Slack for a noisy machine; not a timing assertion. */
const marginMs = 8000;

interface LimitedServer {
  readonly child: ChildProcess;
  readonly url: string;
  readonly port: number;
  stderr(): string;
  close(): Promise<void>;
}

/** `openexec serve` in a child process whose file limit is `fileLimit` (sh's ulimit -n). */
async function spawnLimited(env: Record<string, string>): Promise<LimitedServer> {
  const dir = scratchDir();
  const child = spawn(
    "sh",
    [
      "-c",
      `ulimit -n ${fileLimit} && exec "$@"`,
      "sh",
      process.execPath,
      ...nodeArgsFor(join(packageRoot, "src/cli/main.ts")),
      "serve",
      "--port",
      "0",
    ],
    {
      cwd: packageRoot,
      env: {
        PATH: process.env.PATH ?? "",
        OPENEXEC_LOG_LEVEL: "warn",
        OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db`,
        // Stopped with SIGTERM: no drain period to wait out (default 5 s).
        OPENEXEC_DRAIN_MS: "0",
        ...env,
      },
      stdio: ["ignore", "ignore", "pipe"],
    },
  );
  let stderr = "";
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${stderr}`)), 30_000);
    const onData = () => {
      const match = /listening on (http:\/\/\S+)/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    };
    child.stderr?.on("data", onData);
    void exited.then(() => reject(new Error(`server exited before listening:\n${stderr}`)));
  });
  return {
    child,
    url,
    port: Number(new URL(url).port),
    stderr: () => stderr,
    async close() {
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      dir.cleanup();
    },
  };
}

type Kind = "silent" | "h1-slowloris" | "h1-keep-alive" | "h2-preface-slowloris" | "h2-idle" | "h2-pinging";

interface Attacker {
  readonly kind: Kind;
  readonly openedAt: number;
  closedAt: number | undefined;
}

const h2Preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
const emptySettings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
const ping = Buffer.from([0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);

/**
 * Opens a socket that behaves like `kind` and never sends a whole request:
 * - silent: connects and sends nothing;
 * - h1-slowloris: an HTTP/1.1 request line, then a header line every 250 ms, never the blank line;
 * - h1-keep-alive: one complete request, then nothing on the kept-alive connection;
 * - h2-preface-slowloris: the HTTP/2 preface one byte every 250 ms;
 * - h2-idle: the preface and SETTINGS, then nothing;
 * - h2-pinging: the preface and SETTINGS, then a PING every 250 ms and never a stream.
 */
function attack(port: number, kind: Kind): Promise<Attacker> {
  return new Promise((resolve) => {
    const attacker: Attacker = { kind, openedAt: Date.now(), closedAt: undefined };
    const socket: Socket = connect(port, "127.0.0.1");
    let ticker: NodeJS.Timeout | undefined;
    const every = (send: () => Buffer | string | undefined) => {
      ticker = setInterval(() => {
        const chunk = send();
        if (chunk !== undefined && socket.writable) socket.write(chunk);
      }, 250);
    };
    socket.on("error", () => undefined);
    socket.once("close", () => {
      clearInterval(ticker);
      attacker.closedAt = Date.now();
    });
    socket.resume();
    socket.once("connect", () => {
      switch (kind) {
        case "silent":
          break;
        case "h1-slowloris":
          socket.write("POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\n");
          every(() => "X-Slow: 1\r\n");
          break;
        case "h1-keep-alive":
          socket.write("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
          break;
        case "h2-preface-slowloris": {
          let sent = 0;
          every(() => (sent < h2Preface.length ? h2Preface.subarray(sent, ++sent) : undefined));
          break;
        }
        case "h2-idle":
          socket.write(Buffer.concat([h2Preface, emptySettings]));
          break;
        case "h2-pinging":
          socket.write(Buffer.concat([h2Preface, emptySettings]));
          every(() => ping);
          break;
      }
      resolve(attacker);
    });
  });
}

/** The longest each kind may stay open under `limits` (docs/CONFIGURATION.md, "Connections"). */
const documentedBoundMs: Record<Kind, number> = {
  silent: 1000,
  "h1-slowloris": 1000 + 500, // + the check interval (half the headers timeout, at most 1 s)
  "h1-keep-alive": 1000 + 1000, // + Node's own 1 s keep-alive margin
  "h2-preface-slowloris": 1000,
  "h2-idle": 2000,
  "h2-pinging": 2000,
};

/** A well-behaved client: REST over HTTP/1.1 and gRPC over HTTP/2, each one call after another. */
async function behave(url: string, round: string): Promise<void> {
  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, "healthy");
  const executed = await fetch(`${url}/execute`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ action: "echo", payload: { round }, nonce: `rest-${round}` }),
  });
  assert.equal(executed.status, 200);
  assert.equal(((await executed.json()) as { status: string }).status, "executed");
  const grpc = clientFor(ExecutionService, "grpc", url);
  const answer = await grpc.execute({ action: "add", payload: { a: 1, b: 2 }, nonce: `grpc-${round}` });
  assert.equal(answer.status, ExecutionStatus.EXECUTED);
  assert.equal((await clientFor(InfoService, "grpc", url).getHealth({})).status, "healthy");
}

const kinds: readonly Kind[] = [
  "silent",
  "h1-slowloris",
  "h1-keep-alive",
  "h2-preface-slowloris",
  "h2-idle",
  "h2-pinging",
];

/** Every attacker is closed, none later than its documented bound (+ margin). */
async function expectClosedInTime(attackers: readonly Attacker[]): Promise<void> {
  const deadline = Date.now() + Math.max(...Object.values(documentedBoundMs)) + marginMs;
  while (attackers.some((a) => a.closedAt === undefined) && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  if (process.env.DEBUG_CONNECTIONS) {
    console.error(JSON.stringify(attackers.map((a) => [a.kind, (a.closedAt ?? Number.NaN) - a.openedAt])));
  }
  const open = attackers.filter((a) => a.closedAt === undefined).map((a) => a.kind);
  assert.deepEqual(open, [], "connections the server never closed");
  for (const attacker of attackers) {
    const lifetime = (attacker.closedAt ?? Number.POSITIVE_INFINITY) - attacker.openedAt;
    assert.ok(
      lifetime <= documentedBoundMs[attacker.kind] + marginMs,
      `${attacker.kind} stayed open ${lifetime} ms, bound ${documentedBoundMs[attacker.kind]} ms`,
    );
  }
}

describe("connections: one client cannot lock everyone out", () => {
  let server: LimitedServer;
  before(async () => {
    server = await spawnLimited(limits);
  });
  after(() => server.close());

  it("under the limit, each kind of idle or slow connection is closed by its own timeout", async () => {
    await behave(server.url, "before");
    const attackers: Attacker[] = [];
    // 6 × 20 = 120 connections: below OPENEXEC_MAX_CONNECTIONS, so none is closed to make room.
    for (const kind of kinds) for (let i = 0; i < 20; i++) attackers.push(await attack(server.port, kind));
    await behave(server.url, "timeouts-during");
    await expectClosedInTime(attackers);
    await behave(server.url, "timeouts-after");
  });

  it("more idle sockets than the file limit: newcomers are still served, and every idle socket is closed in time", async () => {
    const attackers: Attacker[] = [];
    for (let i = 0; i < 300; i++) attackers.push(await attack(server.port, kinds[i % kinds.length] as Kind));
    assert.ok(attackers.length > fileLimit);
    // During: the attack still holds every connection it was allowed to keep.
    assert.ok(attackers.filter((a) => a.closedAt === undefined).length >= 100);
    for (let round = 0; round < 3; round++) await behave(server.url, `flood-during-${round}`);
    await expectClosedInTime(attackers);
    // After: still served, and the process neither crashed nor ran out of descriptors.
    await behave(server.url, "flood-after");
    assert.equal(server.child.exitCode, null);
    assert.doesNotMatch(server.stderr(), /EMFILE|uncaught|Error:/i);
  });

  it("an HTTP/2 request whose body never ends is reset after the request timeout; its idle session is then closed", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => undefined);
    const closed = new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));
    const stream = session.request({ ":method": "POST", ":path": "/execute", "content-type": "application/json" });
    const reset = new Promise<number>((resolve) => stream.once("close", () => resolve(stream.rstCode ?? -1)));
    stream.on("error", () => undefined);
    stream.write('{"action":"echo",');
    const openedAt = Date.now();
    const giveUp = <T>(value: T) =>
      new Promise<T>((resolve) => setTimeout(() => resolve(value), 2000 + 2000 + marginMs).unref());
    assert.equal(await Promise.race([reset, giveUp(-2)]), http2.constants.NGHTTP2_CANCEL);
    const lifetime = (await Promise.race([closed, giveUp(Number.POSITIVE_INFINITY)])) - openedAt;
    assert.ok(lifetime <= 2000 + 2000 + marginMs, `the session stayed open ${lifetime} ms`);
    session.destroy();
    await behave(server.url, "after-slow-body");
    // A slow client is not a server error: nothing is logged at warn or error for it.
    assert.doesNotMatch(server.stderr(), /unexpected error|rpc response failed/);
  });

  it("an HTTP/2 session may open at most OPENEXEC_H2_MAX_STREAMS streams at once", async () => {
    const session = http2.connect(server.url);
    session.on("error", () => undefined);
    await new Promise<void>((resolve) => session.once("remoteSettings", () => resolve()));
    assert.equal(session.remoteSettings.maxConcurrentStreams, 10);
    session.destroy();
  });
});

describe("connection settings", () => {
  const registered = ["echo"];

  it("defaults: headers 10 s, request 30 s, keep-alive 5 s, HTTP/2 idle 60 s, 900 connections, 100 streams", () => {
    const config = loadServerConfig({}, {}, registered);
    assert.deepEqual(config.connections, {
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 5_000,
      h2IdleTimeoutMs: 60_000,
      maxConnections: 900,
      maxStreamsPerSession: 100,
    });
    assert.deepEqual(config.connections, defaultConnectionLimits);
  });

  it("reads each from the environment", () => {
    const config = loadServerConfig(limits, {}, registered);
    assert.deepEqual(config.connections, {
      headersTimeoutMs: 1000,
      requestTimeoutMs: 2000,
      keepAliveTimeoutMs: 1000,
      h2IdleTimeoutMs: 2000,
      maxConnections: 150,
      maxStreamsPerSession: 10,
    });
  });

  it("refuses values out of range, and a headers timeout longer than the request timeout", () => {
    assert.throws(
      () =>
        loadServerConfig(
          {
            OPENEXEC_HEADERS_TIMEOUT_MS: "0",
            OPENEXEC_REQUEST_TIMEOUT_MS: "soon",
            OPENEXEC_KEEP_ALIVE_TIMEOUT_MS: "-1",
            OPENEXEC_H2_IDLE_TIMEOUT_MS: "99",
            OPENEXEC_MAX_CONNECTIONS: "0",
            OPENEXEC_H2_MAX_STREAMS: "10001",
          },
          {},
          registered,
        ),
      (error: unknown) => error instanceof ConfigError && error.problems.length === 6,
    );
    assert.throws(
      () =>
        loadServerConfig({ OPENEXEC_HEADERS_TIMEOUT_MS: "5000", OPENEXEC_REQUEST_TIMEOUT_MS: "4000" }, {}, registered),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.problems.includes("OPENEXEC_HEADERS_TIMEOUT_MS must not exceed OPENEXEC_REQUEST_TIMEOUT_MS"),
    );
  });
});
