/**
 * Faults of a PostgreSQL ledger shared by replicas, on a private cluster (the
 * shared one never sees them): a replica killed mid-flight, the database
 * stopped and started under load, and the connection lost during COMMIT.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { type AnyJson, getJson, postJson } from "./support/clients.js";
import { type CommitBreakingProxy, startCommitBreakingProxy } from "./support/commit-breaking-proxy.js";
import {
  adminQuery,
  freshSchema,
  type PostgresSchema,
  postgresSkipReason,
  withSearchPath,
} from "./support/postgres.js";
import { type PrivatePostgres, privatePostgresSkipReason, startPrivatePostgres } from "./support/private-postgres.js";
import {
  auditSharedLedger,
  generateReceiptKeyPem,
  type Replica,
  startReplica,
  startReplicas,
  stopAll,
} from "./support/replica.js";

const skip = (await postgresSkipReason()) || privatePostgresSkipReason();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One request of a load loop and what came back: a status and body, or no answer at all. */
interface Sent {
  readonly nonce: string;
  readonly request: { action: string; payload: AnyJson; nonce: string };
  readonly replica: Replica;
  status?: number;
  body?: AnyJson;
  error?: string;
}

/**
 * `workers` concurrent loops of REST requests with unique nonces until
 * `stop.stopped`: `counter.add` of 1 to `key`, and every fourth a short
 * `test.slow`, spread over `targets()` (read again for every request).
 */
async function loadLoop(
  targets: () => readonly Replica[],
  prefix: string,
  key: string,
  stop: { stopped: boolean },
  options: { workers?: number; slow?: boolean } = {},
  sent: Sent[] = [],
): Promise<Sent[]> {
  let n = 0;
  const worker = async (w: number) => {
    for (let i = 0; !stop.stopped && !suiteOver.stopped; i++) {
      const live = targets();
      const replica = live[n++ % live.length] as Replica;
      const nonce = `${prefix}-${w}-${i}`;
      const request =
        options.slow !== false && i % 4 === 3
          ? { action: "test.slow", payload: { ms: 150 }, nonce }
          : { action: "counter.add", payload: { key, delta: 1 }, nonce };
      const entry: Sent = { nonce, request, replica };
      sent.push(entry);
      try {
        const answer = await postJson(`${replica.url}/execute`, request);
        entry.status = answer.status;
        entry.body = answer.body;
        if (answer.status !== 200) await sleep(20);
      } catch (error) {
        entry.error = String((error as Error).cause ?? error);
      }
    }
  };
  await Promise.all(Array.from({ length: options.workers ?? 6 }, (_, w) => worker(w)));
  return sent;
}

/** Set when the suite ends: no load loop outlives it, whatever failed. */
const suiteOver = { stopped: false };

/** A load loop (see loadLoop) while `during` runs; stopped and collected even when `during` throws. */
async function underLoad(
  targets: () => readonly Replica[],
  prefix: string,
  key: string,
  options: { workers?: number; slow?: boolean },
  during: (sent: readonly Sent[]) => Promise<void>,
): Promise<Sent[]> {
  const stop = { stopped: false };
  const sent: Sent[] = [];
  const load = loadLoop(targets, prefix, key, stop, options, sent);
  try {
    await during(sent);
  } finally {
    stop.stopped = true;
    await load;
  }
  return load;
}

describe("PostgreSQL faults, on a private cluster", { skip, timeout: 180_000 }, () => {
  let cluster: PrivatePostgres | undefined;
  let schema: PostgresSchema;
  let env: Record<string, string>;
  let live: Replica[] = [];
  const everyReplica: Replica[] = [];
  let proxy: CommitBreakingProxy | undefined;
  let proxied: Replica;

  before(async () => {
    cluster = await startPrivatePostgres();
    schema = await freshSchema(cluster.url);
    proxy = await startCommitBreakingProxy(cluster.port);
    env = {
      OPENEXEC_DB_URL: schema.url,
      OPENEXEC_RECEIPT_KEY: generateReceiptKeyPem(),
      // A dead replica's reservations are interrupted by the survivors within about two seconds
      // (1 s, the shortest allowed, lapses on this 2-core machine when it is busy).
      OPENEXEC_LEASE_MS: "2000",
      OPENEXEC_PG_CONNECT_TIMEOUT_MS: "1000",
    };
    const proxiedUrl = withSearchPath(`postgres://postgres@127.0.0.1:${proxy.port}/postgres`, schema.name);
    const started = await startReplicas(4, env, (i) => (i === 3 ? { OPENEXEC_DB_URL: proxiedUrl } : {}));
    everyReplica.push(...started);
    live = started.slice(0, 3);
    proxied = started[3] as Replica;
  });
  after(async () => {
    suiteOver.stopped = true;
    if (process.env.OPENEXEC_TEST_DEBUG) for (const r of everyReplica) process.stderr.write(r.stderr());
    await stopAll(everyReplica);
    await proxy?.close();
    await cluster?.destroy();
  });

  const query = (text: string, values?: unknown[]) => adminQuery(schema.url, text, values);

  async function counter(key: string): Promise<number> {
    const rows = await query("SELECT value FROM counters WHERE key = $1", [key]);
    return rows.length === 0 ? 0 : Number(rows[0]?.value);
  }

  async function waitFor(what: string, check: () => Promise<boolean>, ms = 20_000): Promise<void> {
    const deadline = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
      await sleep(50);
    }
  }

  it("a replica killed (-9) under load, 3 times: acknowledged executions replay everywhere, nothing runs twice, its reservations are interrupted", async () => {
    for (let round = 1; round <= 3; round++) {
      const victim = live[0] as Replica;
      const key = `kill-${round}`;
      // Executions the victim is running when it dies: reserved, pending, never finished.
      const held = [0, 1].map((i) => ({
        action: "test.slow",
        payload: { ms: 10_000 },
        nonce: `held-${round}-${i}-${randomBytes(3).toString("hex")}`,
      }));
      let heldAnswers: Promise<number | "no answer">[] = [];
      const sent = await underLoad(
        () => live,
        `kill${round}-${randomBytes(3).toString("hex")}`,
        key,
        {},
        async (sent) => {
          heldAnswers = held.map((request) =>
            postJson(`${victim.url}/execute`, request).then(
              (answer) => answer.status,
              () => "no answer" as const,
            ),
          );
          await sleep(300);
          await waitFor("the held executions are pending", async () => {
            const rows = await query("SELECT status FROM executions WHERE nonce = ANY($1)", [held.map((h) => h.nonce)]);
            return rows.length === 2 && rows.every((row) => row.status === "pending");
          });
          await waitFor("the victim acknowledged an execution", async () =>
            sent.some((e) => e.replica === victim && e.status === 200),
          );
          await victim.kill();
          live = live.filter((r) => r !== victim);
          const killedAt = sent.length;
          await waitFor("the survivors acknowledged executions since", async () =>
            sent.slice(killedAt).some((e) => e.status === 200),
          );
        },
      );
      // A replacement, so that every round kills one of three.
      const replacement = round < 3 ? startReplica(env) : undefined;

      assert.deepEqual(await Promise.all(heldAnswers), ["no answer", "no answer"]);
      const starved: Sent[] = [];
      for (const entry of sent) {
        if (entry.status === 409 && entry.request.action === "test.slow" && entry.body.reason === "interrupted") {
          // A replica starved for longer than its lease (this 2-core machine under load) has its running
          // reservation interrupted by another: rare, by design, and answered as recorded; checked below.
          starved.push(entry);
        } else if (entry.replica === victim) {
          assert.ok(entry.status === 200 || entry.error !== undefined, `victim answered ${entry.status}`);
        } else {
          assert.equal(entry.status, 200, `${entry.nonce}: ${entry.error ?? JSON.stringify(entry.body)}`);
        }
      }
      if (starved.length > 0) {
        const rows = await query("SELECT DISTINCT status FROM executions WHERE nonce = ANY($1)", [
          starved.map((e) => e.nonce),
        ]);
        assert.deepEqual(rows, [{ status: "interrupted" }]);
      }
      const acknowledged = sent.filter((entry) => entry.status === 200);
      assert.ok(
        acknowledged.some((e) => e.replica === victim),
        "the victim acknowledged executions before dying",
      );
      assert.ok(
        acknowledged.some((e) => e.replica !== victim),
        "the survivors acknowledged executions",
      );

      // The victim's reservations are interrupted by a survivor once its lease ran out.
      await waitFor("no execution is pending", async () => {
        const rows = await query("SELECT count(*)::int AS n FROM executions WHERE status = 'pending'");
        return rows[0]?.n === 0;
      });
      const heldRows = await query("SELECT status FROM executions WHERE nonce = ANY($1)", [held.map((h) => h.nonce)]);
      assert.deepEqual(heldRows, [{ status: "interrupted" }, { status: "interrupted" }]);
      for (const [i, request] of held.entries()) {
        const retried = await postJson(`${live[i % live.length]?.url}/execute`, request);
        assert.equal(retried.status, 409);
        assert.equal(retried.body.reason, "interrupted");
      }

      // Every acknowledged execution replays, identically, from every surviving replica.
      await Promise.all(
        acknowledged.flatMap((entry) =>
          live.map(async (replica) => {
            const replayed = await postJson(`${replica.url}/execute`, entry.request);
            assert.equal(replayed.status, 200);
            assert.equal(replayed.body.replayed, true);
            assert.equal(replayed.body.id, entry.body.id);
            assert.equal(replayed.body.receipt, entry.body.receipt);
            assert.deepEqual(replayed.body.result, entry.body.result);
          }),
        ),
      );
      // Requests the victim never answered: a retry gets what happened (once), or runs it now.
      for (const entry of sent.filter((e) => e.status === undefined)) {
        const retried = await postJson(`${live[0]?.url}/execute`, entry.request);
        if (entry.request.action === "counter.add") assert.equal(retried.status, 200);
        else {
          assert.ok(
            retried.status === 200 || (retried.status === 409 && retried.body.reason === "interrupted"),
            JSON.stringify(retried.body),
          );
        }
      }
      // Each counter.add nonce moved the counter exactly once: all of them are answered now.
      const increments = sent.filter((e) => e.request.action === "counter.add").map((e) => e.nonce);
      assert.equal(await counter(key), increments.length);
      const rows = await query(
        "SELECT status, count(*)::int AS n FROM executions WHERE nonce = ANY($1) GROUP BY status",
        [increments],
      );
      assert.deepEqual(rows, [{ status: "executed", n: increments.length }]);
      if (replacement !== undefined) {
        const fresh = await replacement;
        everyReplica.push(fresh);
        live.push(fresh);
      }
    }
  });

  it("a connection lost during COMMIT: 200 (resolved as committed) or 503, never 500; a retry replays it; the counter moves once", async () => {
    const direct = live[0] as Replica;
    const key = `commit-${randomBytes(3).toString("hex")}`;
    const request = {
      action: "counter.add",
      payload: { key, delta: 1 },
      nonce: `commit-${randomBytes(6).toString("hex")}`,
    };
    (proxy as CommitBreakingProxy).arm();
    const answer = await postJson(`${proxied.url}/execute`, request);
    assert.equal(proxy?.tripped, 1, "the proxy cut off one COMMIT");
    assert.ok(
      answer.status === 200 || answer.status === 503,
      `status ${answer.status}: ${JSON.stringify(answer.body)}`,
    );
    const rows = await query("SELECT execution_id, status FROM executions WHERE nonce = $1", [request.nonce]);
    if (answer.status === 200) {
      // The COMMIT reached PostgreSQL and was read back with txid_status.
      assert.equal(answer.body.replayed, false);
      assert.deepEqual(rows, [{ execution_id: answer.body.id, status: "executed" }]);
    } else {
      assert.equal(answer.body.reason, "store_unavailable");
    }
    const retried = await postJson(`${direct.url}/execute`, request);
    assert.equal(retried.status, 200);
    if (rows.length === 1) {
      assert.equal(retried.body.replayed, true);
      assert.equal(retried.body.id, rows[0]?.execution_id);
    }
    if (answer.status === 200) assert.equal(retried.body.receipt, answer.body.receipt);
    assert.deepEqual(retried.body.result, { key, value: 1 });
    assert.equal(await counter(key), 1);
    // The proxied replica still serves, through new connections.
    const after = await postJson(`${proxied.url}/execute`, { ...request, nonce: `${request.nonce}-2` });
    assert.equal(after.status, 200);
    assert.deepEqual(after.body.result, { key, value: 2 });
    assert.equal(proxy?.tripped, 1);
  });

  it("a replica that loses the database past its lease: another replica interrupts the reservation, and the owner answers 409 interrupted when its handler returns", async () => {
    const request = { action: "test.slow", payload: { ms: 4000 }, nonce: `lapsed-${randomBytes(6).toString("hex")}` };
    const answer = postJson(`${proxied.url}/execute`, request);
    const status = async () =>
      (await query("SELECT status FROM executions WHERE nonce = $1", [request.nonce]))[0]?.status;
    await waitFor("the reservation is pending", async () => (await status()) === "pending");
    proxy?.sever();
    try {
      // The owner cannot renew its lease; a replica that can reach the database interrupts it once it ran out.
      await waitFor("another replica interrupted it", async () => (await status()) === "interrupted");
      // The owner's handler was told its lease is lost and returned; its completion finds the
      // database unreachable for a while yet, and waits for it rather than answering 503.
      await sleep(1000);
    } finally {
      proxy?.heal();
    }
    const owner = await answer;
    assert.equal(owner.status, 409, JSON.stringify(owner.body));
    assert.equal(owner.body.reason, "interrupted");
    const retried = await postJson(`${live[0]?.url}/execute`, request);
    assert.equal(retried.status, 409);
    assert.equal(retried.body.reason, "interrupted");
    assert.equal(await status(), "interrupted");
  });

  it("the database stopped and started under load: only 200 or 503 store_unavailable, /ready 503 while down, recovery without restart, no acknowledged execution lost", async () => {
    const db = cluster as PrivatePostgres;
    const key = `restart-${randomBytes(3).toString("hex")}`;
    const targets = [...live, proxied];
    const sent = await underLoad(
      () => targets,
      `restart-${randomBytes(3).toString("hex")}`,
      key,
      { workers: 4 },
      async () => {
        await sleep(300);
        await db.stop({ mode: "fast" });
        for (const replica of targets) {
          const ready = await getJson(`${replica.url}/ready`);
          assert.equal(ready.status, 503);
          assert.deepEqual(ready.body, { ready: false, reason: "store_unavailable" });
        }
        await sleep(500);
        await db.start();
        // Each replica serves again by itself (new connections from its pool), without a restart.
        for (const replica of targets) {
          await waitFor("the replica serves again", async () => {
            const answer = await postJson(`${replica.url}/execute`, {
              action: "echo",
              payload: {},
              nonce: `probe-${randomBytes(6).toString("hex")}`,
            });
            assert.ok(
              answer.status === 200 || answer.body?.reason === "store_unavailable",
              JSON.stringify(answer.body),
            );
            return answer.status === 200;
          });
          assert.equal((await getJson(`${replica.url}/ready`)).status, 200);
        }
        await sleep(300);
      },
    );

    const interrupted: Sent[] = [];
    for (const entry of sent) {
      assert.equal(entry.error, undefined, `${entry.nonce} got no answer: ${entry.error}`);
      if (entry.status === 409 && entry.request.action === "test.slow") {
        // Its replica could not renew the lease while the database was down, and another replica
        // interrupted the reservation once it ran out: the recorded outcome is answered.
        assert.equal(entry.body.reason, "interrupted");
        interrupted.push(entry);
      } else if (entry.status !== 200) {
        assert.equal(entry.status, 503, JSON.stringify(entry.body));
        assert.equal(entry.body.reason, "store_unavailable");
      }
    }
    if (interrupted.length > 0) {
      const rows = await query("SELECT DISTINCT status FROM executions WHERE nonce = ANY($1)", [
        interrupted.map((e) => e.nonce),
      ]);
      assert.deepEqual(rows, [{ status: "interrupted" }]);
    }
    assert.ok(
      sent.some((e) => e.status === 503),
      "some requests met the stopped database",
    );
    const acknowledged = sent.filter((e) => e.status === 200);
    const stored = await query("SELECT nonce, execution_id, status FROM executions WHERE nonce = ANY($1)", [
      acknowledged.map((e) => e.nonce),
    ]);
    const byNonce = new Map(stored.map((row) => [row.nonce, row]));
    for (const entry of acknowledged) {
      assert.deepEqual(byNonce.get(entry.nonce), {
        nonce: entry.nonce,
        execution_id: entry.body.id,
        status: "executed",
      });
    }
    // Refused requests, retried, run now or replay: each counter.add nonce counts once.
    for (const entry of sent.filter((e) => e.status === 503)) {
      const retried = await postJson(`${entry.replica.url}/execute`, entry.request);
      // A test.slow reserved before its replica lost the database may have been interrupted meanwhile.
      if (retried.status === 409 && entry.request.action === "test.slow")
        assert.equal(retried.body.reason, "interrupted");
      else assert.equal(retried.status, 200, JSON.stringify(retried.body));
    }
    const increments = sent.filter((e) => e.request.action === "counter.add").length;
    assert.equal(await counter(key), increments);
    // After kills, a lost COMMIT, a lapsed lease and a restart, the shared ledger still audits clean.
    const publicKeyPem = await (await fetch(`${live[0]?.url}/receipts/key.pem`)).text();
    const audit = await auditSharedLedger(schema.url, publicKeyPem);
    assert.equal(audit.first_divergence, undefined);
    assert.equal(audit.ok, true);
    const [{ size }] = (await query("SELECT size::int AS size FROM log_state")) as [{ size: number }];
    assert.equal(audit.leaves, size);
  });
});
