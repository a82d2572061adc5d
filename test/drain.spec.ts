import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import http from "node:http";
import { describe, it } from "node:test";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { packageRoot } from "../src/version.js";
import { type AnyJson, clientFor, getJson, postJson } from "./support/clients.js";
import { gatedActions } from "./support/gated-action.js";
import { scratchDir, spawnServer, startTestServer } from "./support/test-server.js";

/** Polls `probe` until it answers true (no deadline: the test's own timeout bounds it). */
async function until(probe: () => Promise<boolean>): Promise<void> {
  while (!(await probe())) await new Promise((resolve) => setTimeout(resolve, 25));
}

/** Whether a new connection to `url` is refused (a fresh socket: a pooled keep-alive one would prove nothing). */
function refusesConnections(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get(`${url}/ready`, { agent: false }, (res) => {
      res.resume();
      resolve(false);
    });
    req.on("error", (error: NodeJS.ErrnoException) => resolve(error.code === "ECONNREFUSED"));
  });
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("drain", () => {
  it("SIGTERM: not ready at once (REST and a Health/Watch stream) while executions still run; a second signal stops at once and keeps what was committed", async () => {
    const dir = scratchDir();
    try {
      // A drain period no test waits out: only the second signal ends it.
      const env = { OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db`, OPENEXEC_DRAIN_MS: "600000" };
      const server = await spawnServer(env);
      const health = clientFor(Health, "grpc", server.url);
      const watching = new AbortController();
      const statuses: ServingStatus[] = [];
      const watched = (async () => {
        for await (const update of health.watch({ service: "" }, { signal: watching.signal })) {
          statuses.push(update.status);
          if (update.status === ServingStatus.NOT_SERVING) return;
        }
      })().catch((error: unknown) => {
        if (!watching.signal.aborted) throw error;
      });
      await until(async () => statuses.length > 0);
      assert.deepEqual(statuses, [ServingStatus.SERVING]);
      assert.equal((await getJson(`${server.url}/ready`)).status, 200);

      server.child.kill("SIGTERM");
      await until(async () => (await fetch(`${server.url}/ready`)).status === 503);
      assert.deepEqual((await getJson(`${server.url}/ready`)).body, { ready: false, reason: "draining" });
      await watched;
      assert.deepEqual(statuses, [ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      // Still serving: load balancers are only now taking it out of rotation.
      const during = await postJson(`${server.url}/execute`, { action: "echo", payload: { k: 1 }, nonce: "drain-1" });
      assert.equal(during.status, 200);
      assert.equal(during.body.status, "executed");
      assert.equal((await getJson(`${server.url}/health`)).status, 200);

      server.child.kill("SIGTERM");
      assert.equal(await server.exited, 0);
      watching.abort();

      const again = await spawnServer({ ...env, OPENEXEC_DRAIN_MS: "0" });
      try {
        const replay = await postJson(`${again.url}/execute`, { action: "echo", payload: { k: 1 }, nonce: "drain-1" });
        assert.equal(replay.body.replayed, true);
        assert.equal(replay.body.id, during.body.id);
      } finally {
        again.child.kill("SIGINT");
        await again.exited;
      }
    } finally {
      dir.cleanup();
    }
  });

  it("after the drain period: the port refuses connections, new executions are refused with draining, in-flight ones finish", async () => {
    const { registry, running, release } = gatedActions();
    const server = await startTestServer({ OPENEXEC_DRAIN_MS: "300" }, { actions: registry });
    try {
      const inflight = postJson(`${server.url}/execute`, { action: "test.wait", payload: {}, nonce: "wait-1" });
      await running;
      // A request whose body is still on its way when the drain period ends: its connection is busy, so it
      // stays open, and its execution is refused once the body arrives.
      const late = startRequest(`${server.url}/execute`);
      const stopping = server.shutdown();
      assert.equal((await getJson(`${server.url}/ready`)).status, 503);
      await until(() => refusesConnections(server.url));
      const refused = await late.finish({ action: "echo", payload: {}, nonce: "late-1" });
      assert.equal(refused.status, 503);
      assert.equal(refused.body.reason, "draining");
      release();
      const finished = await inflight;
      assert.equal(finished.status, 200);
      assert.deepEqual(finished.body.result, { done: true });
      await stopping;
    } finally {
      release();
      await server.close();
    }
  });

  it("npm start: SIGTERM to npm drains the server, which exits 0 and leaves no process behind", async () => {
    const dir = scratchDir();
    const npm = spawn("npm", ["start", "--silent"], {
      cwd: packageRoot,
      env: {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? dir.path,
        OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db`,
        OPENEXEC_PORT: "0",
        OPENEXEC_DRAIN_MS: "500",
        OPENEXEC_LOG_LEVEL: "info",
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    try {
      let stderr = "";
      npm.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk;
      });
      npm.stdout.resume();
      const exited = new Promise<number | null>((resolve) => npm.once("exit", (code) => resolve(code)));
      // npm start builds first (prestart), then serves.
      await until(async () => /listening on http:\/\/\S+/.test(stderr) || npm.exitCode !== null);
      const url = /listening on (http:\/\/\S+)/.exec(stderr)?.[1];
      assert.ok(url, stderr);
      const server = childrenOf(npm.pid as number);
      assert.equal(server.length, 1, "npm runs the server as its only child (the script execs node)");
      const serverPid = server[0] as number;
      assert.equal((await postJson(`${url}/execute`, { action: "echo", payload: {}, nonce: "npm-1" })).status, 200);

      npm.kill("SIGTERM");
      assert.equal(await exited, 0, stderr);
      assert.match(stderr, /"msg":"draining"/);
      assert.match(stderr, /"msg":"stopped"/);
      await until(async () => !processExists(serverPid));
      assert.ok(await refusesConnections(url));
    } finally {
      if (npm.exitCode === null) npm.kill("SIGKILL");
      dir.cleanup();
    }
  });
});

/** The ids of a process's children, from /proc. */
function childrenOf(pid: number): number[] {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim();
  return text === "" ? [] : text.split(/\s+/).map(Number);
}

/** A POST whose headers are sent now and whose body is sent by `finish`. */
function startRequest(url: string): { finish(body: unknown): Promise<{ status: number; body: AnyJson }> } {
  const req = http.request(url, { method: "POST", headers: { "content-type": "application/json" } });
  const answered = new Promise<{ status: number; body: AnyJson }>((resolve, reject) => {
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8").on("data", (chunk: string) => {
        text += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
    });
    req.on("error", reject);
  });
  req.flushHeaders();
  return {
    finish(body) {
      req.end(JSON.stringify(body));
      return answered;
    },
  };
}
