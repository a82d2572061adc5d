// OpenExec as a library (docs/LIBRARY.md): an operator's program serves its own actions through
// `openexec/server`, and calls them through `openexec/client`, in this process.
import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { after, before, describe, it } from "node:test";
import { createClient } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { defineAction, LedgerEffect, z } from "../src/public/actions.js";
import {
  Code,
  ConnectError,
  createOpenExecClient,
  ExecutionStatus,
  type OpenExecProtocol,
  reasonOf,
  receiptEvidence,
  resultOf,
  verifyReceiptOffline,
} from "../src/public/client.js";
import { ConfigError, createOpenExecHandler, type OpenExecHandler, startOpenExec } from "../src/public/server.js";
import { type AnyJson, postJson } from "./support/clients.js";
import { scratchDir } from "./support/test-server.js";

/** A secret the payloads carry: no answer may echo it, nor the unknown key's name. */
const secret = "hunter2-do-not-echo";
const secretKey = "leakedFieldName";

/** The operator's actions, with how often each handler ran. */
function operatorActions() {
  const calls = { ticket: 0, tally: 0 };
  let gate: Promise<void> = Promise.resolve();
  let started: () => void = () => {};
  const ticket = defineAction({
    name: "ticket.create",
    summary: "opens a ticket in the operator's tracker",
    effects: "external",
    input: z.strictObject({ title: z.string().min(1).max(80), wait: z.boolean().optional() }),
    output: z.strictObject({ ticket: z.string(), execution: z.string() }),
    run: async ({ title, wait }, context) => {
      calls.ticket++;
      if (wait === true) {
        started();
        await gate;
      }
      return { ticket: `T-${title.length}-${calls.ticket}`, execution: context.executionId };
    },
  });
  const tally = defineAction({
    name: "tally.add",
    summary: "adds to the operator's tally",
    effects: "ledger",
    input: z.strictObject({ by: z.int().min(1).max(100) }),
    run: ({ by }) => {
      calls.tally++;
      return LedgerEffect.counterAdd("tally", by);
    },
  });
  return {
    actions: [ticket, tally],
    calls,
    /** Holds `wait: true` handlers until the returned release is called; resolves `running` once one runs. */
    hold(): { running: Promise<void>; release: () => void } {
      let release: () => void = () => {};
      gate = new Promise((resolve) => {
        release = resolve;
      });
      const running = new Promise<void>((resolve) => {
        started = resolve;
      });
      return { running, release: () => release() };
    },
  };
}

/** Settings every server here runs with: its own ledger, quiet, quick checkpoints, no drain period. */
function quiet(dbPath: string) {
  return {
    dbUrl: `sqlite:///${dbPath}`,
    logLevel: "silent" as const,
    ledgerThread: false,
    checkpointIntervalMs: 50,
    drainMs: 0,
  };
}

/** Execute, replay, conflict, bad payload and an offline-verified receipt, through the packaged client. */
async function exercise(
  url: string,
  protocol: OpenExecProtocol,
  calls: { ticket: number },
  httpVersion: "1.1" | "2" = "1.1",
) {
  const client = createOpenExecClient(url, { protocol, httpVersion });
  const nonce = `${protocol}-${httpVersion}-${Math.random().toString(36).slice(2)}`;
  const before = calls.ticket;
  const first = await client.execution.execute({ action: "ticket.create", payload: { title: "printer" }, nonce });
  assert.equal(first.status, ExecutionStatus.EXECUTED, protocol);
  assert.equal(first.replayed, false);
  assert.deepEqual(resultOf(first), { ticket: `T-7-${before + 1}`, execution: first.id });

  const again = await client.execution.execute({ action: "ticket.create", payload: { title: "printer" }, nonce });
  assert.equal(again.replayed, true, protocol);
  assert.equal(again.id, first.id);
  assert.deepEqual(resultOf(again), resultOf(first));
  assert.equal(calls.ticket, before + 1, "the handler ran once");

  await assert.rejects(
    client.execution.execute({ action: "ticket.create", payload: { title: "scanner" }, nonce }),
    (error: unknown) => {
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.code, Code.AlreadyExists, protocol);
      assert.equal(reasonOf(error), "nonce_reused");
      return true;
    },
  );

  await assert.rejects(
    client.execution.execute({
      action: "ticket.create",
      payload: { title: 42, [secretKey]: secret },
      nonce: `${nonce}-bad`,
    }),
    (error: unknown) => {
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.code, Code.InvalidArgument, protocol);
      assert.equal(reasonOf(error), "action_input_invalid");
      assert.match(error.rawMessage, /title/, "the message is the schema's");
      assert.ok(!error.rawMessage.includes(secret) && !error.rawMessage.includes(secretKey), error.rawMessage);
      assert.ok(!error.rawMessage.includes("42"), error.rawMessage);
      return true;
    },
  );
  assert.equal(calls.ticket, before + 1, "refused calls never ran the handler");

  const { publicKeyPem } = await client.info.getReceiptKey({});
  const bundle = await until(() => client.log.getReceiptBundle({ execId: first.id }));
  const evidence = receiptEvidence(publicKeyPem, bundle, resultOf(first));
  assert.ok(typeof evidence !== "string", String(evidence));
  const verdict = verifyReceiptOffline(evidence);
  assert.deepEqual(verdict.problems, [], protocol);
  assert.equal(verdict.receipt?.executionId, first.id);
}

/** Retries `attempt` until it resolves (a receipt's checkpoint is signed by a timer). */
async function until<T>(attempt: () => Promise<T>): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await attempt();
    } catch (error) {
      if (tries > 100) throw error;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** HTTP/2 sessions by server, for closing: a client's idle session would otherwise hold server.close(). */
const sessions = new WeakMap<http2.Http2Server, Set<http2.ServerHttp2Session>>();

function listen(server: http.Server | http2.Http2Server): Promise<string> {
  if (!(server instanceof http.Server)) {
    const open = new Set<http2.ServerHttp2Session>();
    sessions.set(server, open);
    server.on("session", (session: http2.ServerHttp2Session) => {
      open.add(session);
      session.once("close", () => open.delete(session));
    });
  }
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`));
  });
}

function closeServer(server: http.Server | http2.Http2Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    if (server instanceof http.Server) server.closeAllConnections();
    else for (const session of sessions.get(server) ?? []) session.destroy();
  });
}

describe("openexec/server: startOpenExec", () => {
  const dir = scratchDir();
  const operator = operatorActions();
  let server: Awaited<ReturnType<typeof startOpenExec>>;
  before(async () => {
    server = await startOpenExec({
      actions: operator.actions,
      // The environment still works; each option wins over its variable.
      env: { CLAWSHIELD_TENANT_ID: "from-env", OPENEXEC_DRAIN_MS: "600000", OPENEXEC_PORT: "1" },
      ...quiet(`${dir.path}/ledger.db`),
      tenantId: "from-option",
      port: 0,
    });
  });
  after(async () => {
    await server.close({ now: true });
    dir.cleanup();
  });

  it("serves exactly the operator's actions, with the options over the environment", async () => {
    const health = (await (await fetch(`${server.url}/health`)).json()) as AnyJson;
    assert.deepEqual(health.actions, ["tally.add", "ticket.create"]);
    assert.equal(health.tenant_id, "from-option");
    const echo = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "no-builtins" });
    assert.equal(echo.status, 404, JSON.stringify(echo.body));
  });

  it("REST: execute, replay, 409 nonce_reused, 400 action_input_invalid without the payload", async () => {
    const execute = (payload: object, nonce: string) =>
      postJson(`${server.url}/execute`, { action: "ticket.create", payload, nonce });
    const before = operator.calls.ticket;
    const first = await execute({ title: "rest" }, "rest-1");
    assert.equal(first.status, 200, JSON.stringify(first.body));
    const again = await execute({ title: "rest" }, "rest-1");
    assert.equal(again.body.replayed, true);
    assert.equal(operator.calls.ticket, before + 1);
    const conflict = await execute({ title: "other" }, "rest-1");
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.reason, "nonce_reused");
    const bad = await execute({ title: "x", [secretKey]: secret }, "rest-bad");
    assert.equal(bad.status, 400);
    assert.equal(bad.body.reason, "action_input_invalid");
    const text = JSON.stringify(bad.body);
    assert.ok(!text.includes(secret) && !text.includes(secretKey), text);
  });

  it("a ledger action applies its effect once, however often it is replayed", async () => {
    const client = createOpenExecClient(server.url);
    const first = await client.execution.execute({ action: "tally.add", payload: { by: 3 }, nonce: "tally-1" });
    const again = await client.execution.execute({ action: "tally.add", payload: { by: 3 }, nonce: "tally-1" });
    const next = await client.execution.execute({ action: "tally.add", payload: { by: 2 }, nonce: "tally-2" });
    assert.deepEqual(resultOf(first), { key: "tally", value: 3 });
    assert.deepEqual(resultOf(again), { key: "tally", value: 3 });
    assert.equal(again.replayed, true);
    assert.deepEqual(resultOf(next), { key: "tally", value: 5 });
    assert.equal(operator.calls.tally, 2);
  });

  for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
    it(`${protocol}: execute, replay, conflict, bad payload, receipt verified offline`, async () => {
      await exercise(server.url, protocol, operator.calls, protocol === "grpc" ? "2" : "1.1");
    });
  }
});

describe("openexec/server: configuration", () => {
  it("a bad setting throws ConfigError listing it, before anything is opened", async () => {
    await assert.rejects(
      startOpenExec({ actions: [], env: {}, maxBodyBytes: 5, allowedActions: ["nope"], logLevel: "silent" }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 2, error.message);
        assert.match(error.message, /OPENEXEC_MAX_BODY_BYTES/);
        assert.match(error.message, /OPENEXEC_ALLOWED_ACTIONS names "nope"/);
        return true;
      },
    );
  });
});

describe("openexec/server: close() drains", () => {
  it("an execution in flight finishes and is answered; then new connections are refused and the ledger is closed", async () => {
    const dir = scratchDir();
    const operator = operatorActions();
    const server = await startOpenExec({ actions: operator.actions, env: {}, ...quiet(`${dir.path}/l.db`), port: 0 });
    try {
      const held = operator.hold();
      const inFlight = postJson(`${server.url}/execute`, {
        action: "ticket.create",
        payload: { title: "slow", wait: true },
        nonce: "held",
      });
      await held.running;
      const closed = server.close();
      let closedYet = false;
      void closed.then(() => {
        closedYet = true;
      });
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(closedYet, false, "close waits for the execution in flight");
      held.release();
      const answer = await inFlight;
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.status, "executed");
      await closed;
      await assert.rejects(fetch(`${server.url}/health`));
      assert.equal(server.close(), closed, "every call answers the same stop");
    } finally {
      await server.close({ now: true });
      dir.cleanup();
    }
  });
});

describe("openexec/server: createOpenExecHandler on the operator's own servers", () => {
  const dir = scratchDir();
  const operator = operatorActions();
  let openexec: OpenExecHandler;
  const servers: (http.Server | http2.Http2Server)[] = [];
  before(async () => {
    openexec = await createOpenExecHandler({ actions: operator.actions, env: {}, ...quiet(`${dir.path}/l.db`) });
  });
  after(async () => {
    for (const server of servers) await closeServer(server);
    await openexec.close();
    dir.cleanup();
  });
  /** An adapter's fallback: the operator's own path, then OpenExec's REST paths. */
  const operatorThenOpenExec: OpenExecHandler["handler"] = (req, res) => {
    if (req.url === "/operator") {
      res.writeHead(200, { "content-type": "text/plain" });
      res.end("operator");
      return;
    }
    openexec.handler(req, res);
  };

  it("on http2.createServer (h2c): Connect over HTTP/2 and gRPC", async () => {
    const server = http2.createServer(openexec.handler);
    servers.push(server);
    const url = await listen(server);
    await exercise(url, "connect", operator.calls, "2");
    await exercise(url, "grpc", operator.calls, "2");
  });

  it("on http.createServer: REST, Connect and gRPC-web", async () => {
    const server = http.createServer(openexec.handler);
    servers.push(server);
    const url = await listen(server);
    const rest = await postJson(`${url}/execute`, {
      action: "ticket.create",
      payload: { title: "mounted" },
      nonce: "mounted-1",
    });
    assert.equal(rest.status, 200, JSON.stringify(rest.body));
    await exercise(url, "connect", operator.calls);
    await exercise(url, "grpc-web", operator.calls);
  });

  it("routes inside connectNodeAdapter, beside the operator's own service and paths", async () => {
    const adapter = connectNodeAdapter({
      routes: (router) => {
        // The operator's own service on the same router.
        router.service(Health, {
          check: () => ({ status: HealthCheckResponse_ServingStatus.SERVING }),
          watch: async function* () {},
          list: () => ({}),
        });
        openexec.routes(router);
      },
      // The operator's own path, then OpenExec's REST paths.
      fallback: operatorThenOpenExec,
    });
    const server = http2.createServer(adapter);
    servers.push(server);
    const url = await listen(server);
    for (const protocol of ["connect", "grpc", "grpc-web"] as const) {
      await exercise(url, protocol, operator.calls, "2");
    }
    const { transport } = createOpenExecClient(url, { protocol: "grpc" });
    const health = await createClient(Health, transport).check({ service: "" });
    assert.equal(health.status, HealthCheckResponse_ServingStatus.SERVING);
  });

  it("mounted, the REST paths and the operator's path answer over HTTP/1.1", async () => {
    const adapter = connectNodeAdapter({
      routes: openexec.routes,
      fallback: operatorThenOpenExec,
    });
    const server = http.createServer(adapter);
    servers.push(server);
    const url = await listen(server);
    assert.equal(await (await fetch(`${url}/operator`)).text(), "operator");
    const rest = await postJson(`${url}/execute`, { action: "tally.add", payload: { by: 1 }, nonce: "rest-mounted" });
    assert.equal(rest.status, 200, JSON.stringify(rest.body));
    await exercise(url, "connect", operator.calls);
  });
});
