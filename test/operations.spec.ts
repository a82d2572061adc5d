import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { describe, it } from "node:test";
import { type Action, anyObjectSchema } from "../src/actions/action.js";
import { builtinActions } from "../src/actions/builtin.js";
import { echoAction } from "../src/actions/echo.js";
import { ActionRegistry } from "../src/actions/registry.js";
import { ConfigError, loadServerConfig } from "../src/config/server-config.js";
import { type AnyJson, getJson, postJson } from "./support/clients.js";
import { gatedActions } from "./support/gated-action.js";
import { runCli, scratchDir, spawnServer, startTestServer } from "./support/test-server.js";

const names = builtinActions.map((a) => a.name);

describe("configuration", () => {
  it("defaults: demo mode, 127.0.0.1:5000, sqlite:///openexec.db in the working directory", () => {
    const config = loadServerConfig({}, {}, names);
    assert.equal(config.mode, "demo");
    assert.equal(config.host, "127.0.0.1");
    assert.equal(config.port, 5000);
    assert.deepEqual(config.database, { kind: "sqlite", path: `${process.cwd()}/openexec.db` });
    assert.equal(config.allowedActions, undefined);
    assert.deepEqual(config.limits, {
      maxBodyBytes: 1048576,
      maxJsonDepth: 32,
      maxNonceLength: 128,
      handlerTimeoutMs: 5000,
    });
  });

  it("flags win over the environment; absolute sqlite URLs keep their path", () => {
    const config = loadServerConfig(
      { OPENEXEC_HOST: "0.0.0.0", OPENEXEC_PORT: "7000", OPENEXEC_DB_URL: "sqlite:////var/lib/x.db" },
      { port: "7001" },
      names,
    );
    assert.equal(config.host, "0.0.0.0");
    assert.equal(config.port, 7001);
    assert.deepEqual(config.database, { kind: "sqlite", path: "/var/lib/x.db" });
  });

  it("collects every problem into one ConfigError", () => {
    assert.throws(
      () =>
        loadServerConfig(
          {
            OPENEXEC_MODE: "prod",
            OPENEXEC_PORT: "70000",
            OPENEXEC_DB_URL: "mysql://x",
            OPENEXEC_ALLOWED_ACTIONS: "echo,launch.missiles",
            OPENEXEC_MAX_BODY_BYTES: "lots",
          },
          {},
          names,
        ),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.problems.length, 5);
        assert.match(error.message, /launch\.missiles/);
        return true;
      },
    );
  });

  it("PostgreSQL needs one receipt key for every replica: OPENEXEC_RECEIPT_KEY or its _FILE form", () => {
    const url = "postgres://openexec:s3cret-pw@db.internal:5432/openexec?sslmode=verify-full";
    assert.throws(
      () => loadServerConfig({ OPENEXEC_DB_URL: url }, {}, names),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems.length, 1);
        assert.match(error.message, /OPENEXEC_RECEIPT_KEY/);
        assert.doesNotMatch(error.message, /s3cret-pw/);
        return true;
      },
    );
    const dir = scratchDir();
    try {
      const keyFile = join(dir.path, "receipt-key.pem");
      writeFileSync(keyFile, "PEM", { mode: 0o600 });
      const config = loadServerConfig(
        {
          OPENEXEC_DB_URL: url,
          OPENEXEC_RECEIPT_KEY_FILE: keyFile,
          OPENEXEC_PG_POOL_SIZE: "4",
          OPENEXEC_PG_STATEMENT_TIMEOUT_MS: "2000",
          OPENEXEC_PG_CONNECT_TIMEOUT_MS: "1500",
          OPENEXEC_IN_PROGRESS_WAIT_MS: "250",
        },
        {},
        names,
      );
      assert.deepEqual(config.database, { kind: "postgres", url });
      assert.equal(config.receiptKeyPem, "PEM");
      assert.deepEqual(config.postgres, { poolSize: 4, statementTimeoutMs: 2000, connectTimeoutMs: 1500 });
      assert.equal(config.inProgressWaitMs, 250);
      // Defaults: the in-progress wait follows the handler timeout.
      const defaults = loadServerConfig({ OPENEXEC_HANDLER_TIMEOUT_MS: "700" }, {}, names);
      assert.deepEqual(defaults.postgres, { poolSize: 10, statementTimeoutMs: 5000, connectTimeoutMs: 5000 });
      assert.equal(defaults.inProgressWaitMs, 1700);
      assert.throws(
        () => loadServerConfig({ OPENEXEC_RECEIPT_KEY: "PEM", OPENEXEC_RECEIPT_KEY_FILE: keyFile }, {}, names),
        /OPENEXEC_RECEIPT_KEY or OPENEXEC_RECEIPT_KEY_FILE, not both/,
      );
      assert.throws(
        () => loadServerConfig({ OPENEXEC_RECEIPT_KEY_FILE: join(dir.path, "missing.pem") }, {}, names),
        /OPENEXEC_RECEIPT_KEY_FILE: cannot read .*missing\.pem: ENOENT/,
      );
      assert.throws(
        () => loadServerConfig({ OPENEXEC_PG_POOL_SIZE: "0", OPENEXEC_PG_CONNECT_TIMEOUT_MS: "x" }, {}, names),
        (error: unknown) => error instanceof ConfigError && error.problems.length === 2,
      );
    } finally {
      dir.cleanup();
    }
  });

  it("an empty OPENEXEC_ALLOWED_ACTIONS means unrestricted, as in the original", () => {
    assert.equal(loadServerConfig({ OPENEXEC_ALLOWED_ACTIONS: " " }, {}, names).allowedActions, undefined);
  });
});

describe("allow-list", () => {
  it("restricts actions with 403 action_not_allowed and reports it in /health", async () => {
    const server = await startTestServer({ OPENEXEC_ALLOWED_ACTIONS: "echo, add" });
    try {
      const health = await getJson(`${server.url}/health`);
      assert.equal(health.body.restriction, "restricted");
      assert.deepEqual(health.body.allow_list, ["add", "echo"]);
      assert.equal(health.body.warning, undefined);
      const denied = await postJson(`${server.url}/execute`, {
        action: "counter.add",
        payload: { key: "k", delta: 1 },
        nonce: "al-1",
      });
      assert.equal(denied.status, 403);
      assert.equal(denied.body.code, "permission_denied");
      assert.equal(denied.body.reason, "action_not_allowed");
      const allowed = await postJson(`${server.url}/execute`, { action: "echo", payload: {}, nonce: "al-2" });
      assert.equal(allowed.status, 200);
    } finally {
      await server.close();
    }
  });

  it("naming an action that does not exist refuses to start, with a clear message", async () => {
    const { code, stderr } = await runCli(["serve", "--port", "0"], {
      OPENEXEC_ALLOWED_ACTIONS: "echo,delete_everything",
    });
    assert.equal(code, 2);
    assert.match(stderr, /OPENEXEC_ALLOWED_ACTIONS names "delete_everything", which is not a registered action/);
  });
});

describe("the action registry", () => {
  it("is sealed at start: registering afterwards throws", async () => {
    const registry = new ActionRegistry().register(echoAction).seal();
    const late: Action<unknown> = {
      name: "late",
      effects: "ledger",
      summary: "",
      inputSchema: anyObjectSchema,
      parseInput: (p) => p,
      run: () => ({ kind: "result", result: 1 }),
    };
    assert.throws(() => registry.register(late), /sealed/);
    assert.equal(registry.get("late"), undefined);
  });

  it("refuses duplicate and badly named actions", () => {
    const registry = new ActionRegistry().register(echoAction);
    assert.throws(() => registry.register(echoAction), /twice/);
    assert.throws(() => registry.register({ ...echoAction, name: "Bad Name" }), /invalid action name/);
  });
});

describe("the command line", () => {
  it("openexec serve --help describes the options and environment", async () => {
    const { code, stdout } = await runCli(["serve", "--help"]);
    assert.equal(code, 0);
    for (const word of ["--host", "--port", "OPENEXEC_MODE", "OPENEXEC_DB_URL", "OPENEXEC_ALLOWED_ACTIONS"]) {
      assert.ok(stdout.includes(word), word);
    }
  });

  it("an unknown command or flag is a usage error", async () => {
    assert.equal((await runCli(["launch"])).code, 2);
    assert.notEqual((await runCli(["serve", "--frobnicate"])).code, 0);
  });

  it("a port in use is a clear start-up error", async () => {
    const server = await startTestServer();
    const dir = scratchDir();
    try {
      const { port } = new URL(server.url);
      const { code, stderr } = await runCli(["serve", "--port", port], {
        OPENEXEC_DB_URL: `sqlite:///${dir.path}/other.db`,
      });
      assert.equal(code, 1);
      assert.match(stderr, /EADDRINUSE/);
    } finally {
      await server.close();
      dir.cleanup();
    }
  });
});

describe("graceful shutdown", () => {
  it("SIGTERM: exits 0 and keeps what it executed", async () => {
    const dir = scratchDir();
    try {
      const env = { OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db` };
      const first = await spawnServer(env);
      const answer = await postJson(`${first.url}/execute`, { action: "echo", payload: { k: 1 }, nonce: "sig-1" });
      assert.equal(answer.status, 200);
      first.child.kill("SIGTERM");
      assert.equal(await first.exited, 0);
      const second = await spawnServer(env);
      const replay = await postJson(`${second.url}/execute`, { action: "echo", payload: { k: 1 }, nonce: "sig-1" });
      assert.equal(replay.body.replayed, true);
      assert.equal(replay.body.id, answer.body.id);
      second.child.kill("SIGINT");
      assert.equal(await second.exited, 0);
    } finally {
      dir.cleanup();
    }
  });

  it("drains: in-flight executions finish, /ready is 503 meanwhile, new executions are refused", async () => {
    const { registry, running, release } = gatedActions();
    const server = await startTestServer({}, { actions: registry });
    const inflight = postJson(`${server.url}/execute`, { action: "test.wait", payload: {}, nonce: "drain-1" });
    await running;
    // A second connection, opened before the drain starts, keeps asking during it.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const readyBefore = await request(agent, `${server.url}/ready`);
    assert.equal(readyBefore.status, 200);
    const stopping = server.shutdown();
    const readyDuring = await request(agent, `${server.url}/ready`);
    assert.equal(readyDuring.status, 503);
    assert.deepEqual(readyDuring.body, { ready: false, reason: "draining" });
    const refused = await request(agent, `${server.url}/execute`, { action: "echo", payload: {}, nonce: "drain-2" });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.reason, "draining");
    agent.destroy();
    release();
    const finished = await inflight;
    assert.equal(finished.status, 200);
    assert.deepEqual(finished.body.result, { done: true });
    await stopping;
    await server.close();
  });
});

/** One request on a given agent, so that a test controls which connection carries it. */
function request(agent: http.Agent, url: string, body?: unknown): Promise<{ status: number; body: AnyJson }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      { agent, method: body === undefined ? "GET" : "POST", headers: { "content-type": "application/json" } },
      (res) => {
        let text = "";
        res.setEncoding("utf8").on("data", (chunk: string) => {
          text += chunk;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}
