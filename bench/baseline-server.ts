/**
 * The benchmark's baseline: the least a durable execute endpoint can do.
 *
 * A bare node:http server that, per POST, reads the JSON body, runs ONE SQLite
 * insert of a finished `executions` row (the real schema from
 * src/ledger/sqlite-migrations.ts; WAL, synchronous=FULL; one autocommit
 * transaction, so one WAL fsync, per request; no batching) and answers a small
 * JSON body. No validation beyond the shape, no handler, no receipt encoding.
 *
 * Run as a child process by bench/execute-bench.ts:
 *   node --import tsx bench/baseline-server.ts /abs/path/baseline.db
 * It prints "listening on http://127.0.0.1:PORT" to stderr and stops on SIGTERM.
 */
import { createHash, randomUUID } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import Database from "better-sqlite3";
import { sqliteMigrations } from "../src/ledger/sqlite-migrations.js";

const dbPath = process.argv[2];
if (dbPath === undefined) {
  process.stderr.write("usage: baseline-server.ts DB_PATH\n");
  process.exit(2);
}

const db = new Database(dbPath);
db.pragma("journal_mode = WAL");
db.pragma("synchronous = FULL");
db.pragma("foreign_keys = ON");
db.pragma("busy_timeout = 5000");
for (const migration of sqliteMigrations) db.exec(migration.sql);

const insert = db.prepare(`
  INSERT INTO executions (execution_id, tenant_id, nonce, action, payload_digest, approval_id, approval_digest,
    logical_time_ms, status, reason, result_json, result_digest, receipt, receipt_digest)
  VALUES (@executionId, @tenantId, @nonce, @action, @payloadDigest, NULL, NULL,
    @logicalTimeMs, 'executed', NULL, @resultJson, @resultDigest, @receipt, @receiptDigest)`);

const sha256 = (data: string | Buffer): Buffer => createHash("sha256").update(data).digest();

function answer(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.method !== "POST") {
    answer(res, 405, { error: "POST only" });
    return;
  }
  const chunks: Buffer[] = [];
  req.on("data", (chunk: Buffer) => chunks.push(chunk));
  req.on("end", () => {
    let body: { action?: unknown; nonce?: unknown; payload?: unknown };
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as typeof body;
    } catch {
      answer(res, 400, { error: "invalid JSON" });
      return;
    }
    const { action, nonce, payload } = body;
    if (typeof action !== "string" || typeof nonce !== "string" || typeof payload !== "object" || payload === null) {
      answer(res, 400, { error: "action, nonce and payload are required" });
      return;
    }
    const executionId = randomUUID();
    const logicalTimeMs = Date.now();
    const resultJson = JSON.stringify({ echo: payload });
    const resultDigest = sha256(resultJson);
    const payloadDigest = sha256(JSON.stringify(payload));
    // A receipt of roughly the real one's size: the fields it binds together.
    const receipt = Buffer.from(
      JSON.stringify({ executionId, tenantId: "demo", action, nonce, payloadDigest, resultDigest, logicalTimeMs }),
    );
    const receiptDigest = sha256(receipt);
    try {
      insert.run({
        executionId,
        tenantId: "demo",
        nonce,
        action,
        payloadDigest,
        logicalTimeMs,
        resultJson,
        resultDigest,
        receipt,
        receiptDigest,
      });
    } catch (error) {
      answer(res, 500, { error: (error as Error).message });
      return;
    }
    answer(res, 200, { id: executionId, receipt: receiptDigest.toString("hex") });
  });
}

const server = createServer({ keepAliveTimeout: 30_000 }, handle);
server.listen(0, "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  process.stderr.write(`baseline listening on http://127.0.0.1:${port}\n`);
});

const stop = () => {
  server.close();
  server.closeAllConnections();
  db.close();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
