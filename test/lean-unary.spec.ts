import assert from "node:assert/strict";
import http from "node:http";
import http2 from "node:http2";
import { after, before, describe, it } from "node:test";
import { brotliDecompressSync, gunzipSync, gzipSync } from "node:zlib";
import { create, type DescMessage, fromBinary, type JsonValue, toBinary, toJson } from "@bufbuild/protobuf";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import { HealthCheckRequestSchema, HealthCheckResponseSchema } from "../gen/grpc/health/v1/health_pb.js";
import { ErrorDetailSchema } from "../gen/openexec/v1/error_pb.js";
import {
  ExecuteRequestSchema,
  ExecuteResponseSchema,
  VerifyReceiptRequestSchema,
  VerifyReceiptResponseSchema,
} from "../gen/openexec/v1/execution_pb.js";
import { GetVersionRequestSchema, GetVersionResponseSchema } from "../gen/openexec/v1/info_pb.js";
import { type LoggedServer, startLoggedServer } from "./support/captured-log.js";
import { envelope } from "./support/raw-rpc.js";

/**
 * The lean unary path (src/transport/lean-unary.ts) must put the same bytes on
 * the wire as connect-es: every request here goes to a server with the lean
 * path on and to one with it off (OPENEXEC_LEAN_UNARY=off), and the two
 * answers must be the same, header by header (order and case included),
 * body and trailers. What differs between two ledgers (execution ids, receipt
 * digests, signatures, times) is masked where an answer holds an execution.
 */

/** What came back, as received. */
interface Exchange {
  readonly status: number;
  /** [name, value] in the order and case received. */
  readonly headers: (readonly [string, string])[];
  readonly body: Buffer;
  readonly trailers: (readonly [string, string])[];
}

type Transport = "h1" | "h2";

function pairs(raw: readonly string[]): (readonly [string, string])[] {
  const out: (readonly [string, string])[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) out.push([raw[i] as string, raw[i + 1] as string]);
  return out;
}

function sendH1(url: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<Exchange> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: "127.0.0.1", port, path, method: "POST", headers, agent: false },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          resolve({
            status: response.statusCode ?? 0,
            headers: pairs(response.rawHeaders),
            body: Buffer.concat(chunks),
            trailers: pairs(response.rawTrailers),
          }),
        );
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end(body);
  });
}

function sendH2(url: string, path: string, headers: Record<string, string>, body: Uint8Array): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url);
    session.on("error", reject);
    const stream = session.request({ ":method": "POST", ":path": path, ...headers });
    let status = 0;
    let head: (readonly [string, string])[] = [];
    let trailers: (readonly [string, string])[] = [];
    const chunks: Buffer[] = [];
    // node passes the raw header list (order and case as received) as the third argument.
    stream.on("response", ((h: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      status = Number(h[":status"]);
      head = pairs(raw).filter(([name]) => !name.startsWith(":"));
    }) as never);
    stream.on("trailers", ((_h: http2.IncomingHttpHeaders, _flags: number, raw: string[]) => {
      trailers = pairs(raw);
    }) as never);
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", reject);
    stream.on("close", () => {
      session.close();
      resolve({ status, headers: head, body: Buffer.concat(chunks), trailers });
    });
    stream.end(body);
  });
}

const send = (transport: Transport, url: string, path: string, headers: Record<string, string>, body: Uint8Array) =>
  transport === "h1" ? sendH1(url, path, headers, body) : sendH2(url, path, headers, body);

const masked = new Set(["id", "receipt", "signedReceipt", "executionId", "execId"]);

/** A JSON value with the fields that differ between two ledgers replaced by a mark (their presence stays). */
function mask(value: JsonValue): JsonValue {
  if (Array.isArray(value)) return value.map(mask);
  if (value === null || typeof value !== "object") return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, masked.has(k) ? "(masked)" : mask(v)]));
}

function unzip(encoding: string | undefined, bytes: Uint8Array): Buffer {
  if (encoding === "gzip") return gunzipSync(bytes);
  if (encoding === "br") return brotliDecompressSync(bytes);
  return Buffer.from(bytes);
}

/** A google.rpc.Status / Connect error detail, decoded and masked. */
function detailJson(typeName: string, value: Uint8Array): JsonValue {
  if (typeName.endsWith("openexec.v1.ErrorDetail"))
    return mask(toJson(ErrorDetailSchema, fromBinary(ErrorDetailSchema, value)));
  return Buffer.from(value).toString("base64");
}

/**
 * What must be equal between the two servers when the answer holds an
 * execution: headers but date and length, the body decoded and masked, the
 * trailers with their status details decoded and masked.
 */
function comparable(exchange: Exchange, output: DescMessage, dynamic: boolean) {
  const header = (name: string) => exchange.headers.find(([n]) => n.toLowerCase() === name)?.[1];
  const dropped = new Set(["date", ...(dynamic ? ["content-length", "grpc-status-details-bin"] : [])]);
  const headers = exchange.headers.filter(([name]) => !dropped.has(name.toLowerCase()));
  const trailers = exchange.trailers.filter(([name]) => !dropped.has(name.toLowerCase()));
  if (!dynamic) return { status: exchange.status, headers, body: exchange.body.toString("base64"), trailers };
  const contentType = header("content-type") ?? "";
  let body: JsonValue;
  if (contentType.startsWith("application/grpc")) {
    const flags = exchange.body[0];
    const data = exchange.body.subarray(5);
    body =
      exchange.body.length === 0
        ? null
        : {
            flags: flags ?? 0,
            message: mask(
              toJson(output, fromBinary(output, flags === 1 ? unzip(header("grpc-encoding"), data) : data)),
            ),
          };
  } else {
    const plain = unzip(header("content-encoding"), exchange.body);
    if (contentType === "application/proto") body = mask(toJson(output, fromBinary(output, plain)));
    else {
      const json = JSON.parse(plain.toString("utf8")) as { details?: { type: string; value: string }[] };
      body = mask({
        ...json,
        ...(json.details === undefined
          ? {}
          : {
              details: json.details.map((d) => ({
                type: d.type,
                value: detailJson(d.type, Buffer.from(d.value, "base64")),
              })),
            }),
      } as JsonValue);
    }
  }
  const error = findTrailerError(new Headers(exchange.trailers.map(([n, v]) => [n, v] as [string, string])));
  const status =
    error === undefined
      ? undefined
      : {
          code: error.code,
          message: error.rawMessage,
          details: error.details.map((d) => ("desc" in d ? null : detailJson(d.type, d.value))),
        };
  return { status: exchange.status, headers, body, trailers, statusDetails: status };
}

/** openexec_lean_unary_requests_total by outcome, from the server's /metrics. */
async function leanCounts(url: string): Promise<{ answered: number; handed_over: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const count = (outcome: string) =>
    Number(
      new RegExp(`^openexec_lean_unary_requests_total\\{outcome="${outcome}"\\} (\\d+)$`, "m").exec(text)?.[1] ?? 0,
    );
  return { answered: count("answered"), handed_over: count("handed_over") };
}

interface Case {
  readonly name: string;
  readonly transport: Transport;
  readonly path: string;
  readonly headers: Record<string, string>;
  /** The body; a function when it must differ per server (a fresh nonce). */
  readonly body: Uint8Array;
  readonly output: DescMessage;
  /** The answer holds an execution (ids, digests, signatures differ between the servers). */
  readonly dynamic: boolean;
  /** Sent once before, to both servers (e.g. to make the case a replay). */
  readonly before?: Uint8Array;
  /** What the lean path does with it: answers it, reads it and hands it to connect-es, or leaves it alone. */
  readonly lean: "answered" | "handed_over" | "untaken";
}

const execute = "/openexec.v1.ExecutionService/Execute";
const verify = "/openexec.v1.ExecutionService/VerifyReceipt";
const version = "/openexec.v1.InfoService/GetVersion";
const health = "/grpc.health.v1.Health/Check";
const json = (value: unknown) => Buffer.from(JSON.stringify(value));
const executeBinary = (init: Parameters<typeof create<typeof ExecuteRequestSchema>>[1]) =>
  toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, init));

function cases(): Case[] {
  const out: Case[] = [];
  const wires = [
    { wire: "connect-json", transport: "h1", headers: { "content-type": "application/json" } },
    {
      wire: "connect-json-h2",
      transport: "h2",
      headers: { "content-type": "application/json", "connect-protocol-version": "1" },
    },
    { wire: "connect-proto", transport: "h1", headers: { "content-type": "application/proto" } },
    { wire: "grpc", transport: "h2", headers: { "content-type": "application/grpc", te: "trailers" } },
  ] as const;
  let seq = 0;
  for (const { wire, transport, headers } of wires) {
    const binary = wire === "connect-proto" || wire === "grpc";
    const frame = (bytes: Uint8Array) => (wire === "grpc" ? envelope(bytes) : bytes);
    const executeBody = (init: { action: string; payload: Record<string, JsonValue>; nonce: string }) =>
      binary ? frame(executeBinary(init)) : json(init);
    const add = (
      c: Omit<Case, "transport" | "headers" | "lean"> & { headers?: Record<string, string>; lean?: Case["lean"] },
    ) =>
      out.push({
        transport,
        lean: "answered",
        ...c,
        name: `${wire}: ${c.name}`,
        headers: { ...headers, ...c.headers },
      });
    const nonce = () => `lean-${wire}-${seq++}`;
    /** A GetVersion in an encoding the lean path leaves to connect-es. */
    const versionUntaken = (name: string, contentType: string, body: Uint8Array) =>
      add({
        name,
        path: version,
        headers: { "content-type": contentType },
        body,
        output: GetVersionResponseSchema,
        dynamic: false,
        lean: "untaken",
      });
    /** A new echo execution, answered with an execution (ids and digests differ between the servers). */
    const echo = (name: string, payload: Record<string, JsonValue>, extra: Record<string, string> = {}) =>
      add({
        name,
        path: execute,
        headers: extra,
        body: executeBody({ action: "echo", payload, nonce: nonce() }),
        output: ExecuteResponseSchema,
        dynamic: true,
      });

    add({
      name: "Execute",
      path: execute,
      body: executeBody({ action: "echo", payload: { msg: "hi" }, nonce: nonce() }),
      output: ExecuteResponseSchema,
      dynamic: true,
    });
    const replayed = executeBody({ action: "echo", payload: { msg: "again" }, nonce: nonce() });
    add({
      name: "Execute, a replay",
      path: execute,
      body: replayed,
      before: replayed,
      output: ExecuteResponseSchema,
      dynamic: true,
    });
    const conflictNonce = nonce();
    add({
      name: "Execute, the nonce with another payload (conflict)",
      path: execute,
      before: executeBody({ action: "echo", payload: { msg: "one" }, nonce: conflictNonce }),
      body: executeBody({ action: "echo", payload: { msg: "two" }, nonce: conflictNonce }),
      output: ExecuteResponseSchema,
      dynamic: true,
    });
    add({
      name: "Execute, an unknown action",
      path: execute,
      body: executeBody({ action: "rm-rf", payload: {}, nonce: nonce() }),
      output: ExecuteResponseSchema,
      dynamic: true,
    });
    echo(
      "Execute, a large answer to a client that accepts gzip",
      { msg: "x".repeat(2000) },
      wire === "grpc" ? { "grpc-accept-encoding": "gzip" } : { "accept-encoding": "br, gzip" },
    );
    echo(
      "Execute, a small answer to a client that accepts gzip",
      {},
      wire === "grpc" ? { "grpc-accept-encoding": "identity, gzip" } : { "accept-encoding": "gzip" },
    );
    add({
      name: "GetVersion",
      path: version,
      body: binary ? frame(toBinary(GetVersionRequestSchema, create(GetVersionRequestSchema))) : json({}),
      output: GetVersionResponseSchema,
      dynamic: false,
    });
    add({
      name: "Health/Check with a deadline",
      path: health,
      headers: wire === "grpc" ? { "grpc-timeout": "5S" } : { "connect-timeout-ms": "5000" },
      body: binary ? frame(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema))) : json({}),
      output: HealthCheckResponseSchema,
      dynamic: false,
    });
    add({
      name: "an invalid deadline",
      lean: "untaken",
      path: health,
      headers: wire === "grpc" ? { "grpc-timeout": "5 seconds" } : { "connect-timeout-ms": "-1" },
      body: binary ? frame(new Uint8Array()) : json({}),
      output: GetVersionResponseSchema,
      dynamic: false,
    });
    add({
      name: "VerifyReceipt of an unknown execution",
      path: verify,
      body: binary
        ? frame(
            toBinary(VerifyReceiptRequestSchema, create(VerifyReceiptRequestSchema, { execId: "nope", receipt: "00" })),
          )
        : json({ execId: "nope", receipt: "00" }),
      output: VerifyReceiptResponseSchema,
      dynamic: false,
    });
    add({
      name: "a compressed request",
      lean: "untaken",
      path: version,
      headers: wire === "grpc" ? { "grpc-encoding": "gzip" } : { "content-encoding": "gzip" },
      body: wire === "grpc" ? envelope(gzipSync(new Uint8Array()), 1) : gzipSync(binary ? new Uint8Array() : json({})),
      output: GetVersionResponseSchema,
      dynamic: false,
    });
    add({
      name: "a body over the limit",
      lean: transport === "h1" ? "untaken" : "handed_over",
      path: execute,
      body: executeBody({ action: "echo", payload: { msg: "y".repeat(9000) }, nonce: nonce() }),
      output: ExecuteResponseSchema,
      dynamic: false,
    });
    add({
      name: "Execute, the nonce with another payload, to a client that accepts gzip (a large error)",
      path: execute,
      headers: wire === "grpc" ? { "grpc-accept-encoding": "gzip" } : { "accept-encoding": "gzip" },
      before: executeBody({ action: "echo", payload: { msg: "first" }, nonce: `${wire}-gzip-conflict` }),
      body: executeBody({ action: "echo", payload: { msg: "second" }, nonce: `${wire}-gzip-conflict` }),
      output: ExecuteResponseSchema,
      dynamic: true,
    });
    echo(
      "an explicit identity encoding, and an answer encoding the server lacks",
      { msg: "z".repeat(1500) },
      wire === "grpc"
        ? { "grpc-encoding": "identity", "grpc-accept-encoding": "deflate, snappy" }
        : { "content-encoding": "identity", "accept-encoding": "deflate" },
    );
    echo(
      "a large answer to a client that accepts br only",
      { msg: "b".repeat(1500) },
      wire === "grpc" ? { "grpc-accept-encoding": "br" } : { "accept-encoding": "br" },
    );
    add({
      name: "a deadline already past",
      path: version,
      headers: wire === "grpc" ? { "grpc-timeout": "0n" } : { "connect-timeout-ms": "0" },
      body: binary ? frame(toBinary(GetVersionRequestSchema, create(GetVersionRequestSchema))) : json({}),
      output: GetVersionResponseSchema,
      dynamic: false,
    });
    if (wire === "connect-json") {
      const versionBody = json({});
      add({
        name: "Host with a character no URL allows",
        path: version,
        headers: { host: "a^b" },
        body: versionBody,
        output: GetVersionResponseSchema,
        dynamic: false,
        lean: "untaken",
      });
      add({
        name: "Host in capitals with the default port",
        path: version,
        headers: { host: "EXAMPLE.com:80" },
        body: versionBody,
        output: GetVersionResponseSchema,
        dynamic: false,
      });
      add({
        name: "Content-Type with a charset",
        path: version,
        headers: { "content-type": "application/json; charset=utf-8" },
        body: versionBody,
        output: GetVersionResponseSchema,
        dynamic: false,
      });
      add({
        name: "Content-Type in capitals",
        path: version,
        headers: { "content-type": "Application/JSON" },
        body: versionBody,
        output: GetVersionResponseSchema,
        dynamic: false,
      });
      add({
        name: "a chunked body",
        path: execute,
        headers: { "transfer-encoding": "chunked" },
        body: executeBody({ action: "echo", payload: { msg: "chunked" }, nonce: nonce() }),
        output: ExecuteResponseSchema,
        dynamic: true,
      });
      add({
        name: "a chunked body over the limit",
        path: execute,
        headers: { "transfer-encoding": "chunked" },
        body: executeBody({ action: "echo", payload: { msg: "c".repeat(9000) }, nonce: nonce() }),
        output: ExecuteResponseSchema,
        dynamic: false,
        lean: "handed_over",
      });
      versionUntaken("gRPC-web over HTTP/1.1", "application/grpc-web+proto", envelope(new Uint8Array()));
    }
    if (wire === "grpc") {
      versionUntaken("gRPC with JSON", "application/grpc+json", envelope(Buffer.from("{}")));
      versionUntaken("gRPC-web over h2c", "application/grpc-web+proto", envelope(new Uint8Array()));
    }
    if (binary) {
      add({
        name: "truncated protobuf",
        lean: "handed_over",
        path: execute,
        body: frame(Uint8Array.of(0x0a, 0x05, 0x65)),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
      // field 1 (action) sent as a varint: protobuf-es would read it as something else.
      add({
        name: "a field with another wire type",
        lean: "handed_over",
        path: execute,
        body: frame(Uint8Array.of(0x08, 0x01)),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
    } else {
      add({
        name: "malformed JSON",
        lean: "handed_over",
        path: execute,
        body: Buffer.from('{"action":'),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
      add({
        name: "an unknown field",
        lean: "handed_over",
        path: execute,
        body: json({ action: "echo", nonce: "n", bogus: 1 }),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
      add({
        name: "a reserved key",
        lean: "handed_over",
        path: execute,
        body: Buffer.from('{"action":"echo","nonce":"n","payload":{"__proto__":{}}}'),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
      add({
        name: "a field of the wrong type",
        lean: "handed_over",
        path: execute,
        body: json({ action: 7, nonce: "n" }),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
      add({
        name: "an empty body",
        lean: "handed_over",
        path: execute,
        body: new Uint8Array(),
        output: ExecuteResponseSchema,
        dynamic: false,
      });
    }
    if (wire === "grpc") {
      add({
        name: "a compressed frame without an encoding",
        lean: "handed_over",
        path: version,
        body: envelope(new Uint8Array(), 1),
        output: GetVersionResponseSchema,
        dynamic: false,
      });
      add({
        name: "two frames",
        lean: "handed_over",
        path: version,
        body: Buffer.concat([envelope(new Uint8Array()), envelope(new Uint8Array())]),
        output: GetVersionResponseSchema,
        dynamic: false,
      });
      add({
        name: "a frame longer than the body",
        lean: "handed_over",
        path: version,
        body: envelope(new Uint8Array(8)).subarray(0, 9),
        output: GetVersionResponseSchema,
        dynamic: false,
      });
    }
  }
  return out;
}

/** The access-log line of the request sent with `traceId`, once the server has written it. */
async function accessLine(server: LoggedServer, traceId: string): Promise<Record<string, unknown>> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const line = server.lines().find((l) => l.msg === "request" && l.trace_id === traceId);
    if (line !== undefined) return line;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  assert.fail(`no access-log line for trace ${traceId}`);
}

/** What two servers must log alike for the same request (not times, ids or digests, which differ). */
function loggedFacts(line: Record<string, unknown>) {
  const { protocol, http_method, path, rpc, status, code, reason, execution_id, receipt, aborted } = line;
  return {
    protocol,
    http_method,
    path,
    rpc,
    status,
    code,
    reason,
    execution_id: execution_id !== undefined,
    receipt: receipt !== undefined,
    aborted,
  };
}

/** The RPC and execution counters of a server's /metrics (not the lean path's own, nor process metrics). */
async function rpcCounters(server: LoggedServer): Promise<string[]> {
  const text = await (await fetch(`${server.server.url}/metrics`)).text();
  return text
    .split("\n")
    .filter((line) =>
      /^(grpc_server_(started|handled)_total|openexec_(executions|denials|replays)_total)[{ ]/.test(line),
    )
    .sort();
}

describe("the lean unary path answers with connect-es's bytes", () => {
  let lean: LoggedServer;
  let connectEs: LoggedServer;
  before(async () => {
    const env = {
      OPENEXEC_MAX_BODY_BYTES: "8192",
      // Any Host, so that the Host cases reach the RPC handlers.
      OPENEXEC_ALLOWED_HOSTS: "*",
      OPENEXEC_LEDGER_THREAD: "off",
      OPENEXEC_DRAIN_MS: "0",
    };
    [lean, connectEs] = await Promise.all([
      startLoggedServer(env),
      startLoggedServer({ ...env, OPENEXEC_LEAN_UNARY: "off" }),
    ]);
  });
  after(async () => {
    await Promise.all([lean?.close(), connectEs?.close()]);
  });

  let traces = 0;
  for (const c of cases()) {
    it(c.name, async () => {
      if (c.before !== undefined) {
        for (const server of [lean, connectEs]) {
          await send(c.transport, server.server.url, c.path, c.headers, c.before);
        }
      }
      const taken = await leanCounts(lean.server.url);
      const traceId = (++traces).toString(16).padStart(32, "0");
      const headers = { ...c.headers, traceparent: `00-${traceId}-00f067aa0ba902b7-01` };
      const [viaLean, viaConnectEs] = await Promise.all(
        [lean, connectEs].map((server) => send(c.transport, server.server.url, c.path, headers, c.body)),
      );
      assert.ok(viaLean !== undefined && viaConnectEs !== undefined);
      assert.deepEqual(comparable(viaLean, c.output, c.dynamic), comparable(viaConnectEs, c.output, c.dynamic));
      // Logged alike: protocol, RPC, status, code, reason.
      assert.deepEqual(loggedFacts(await accessLine(lean, traceId)), loggedFacts(await accessLine(connectEs, traceId)));
      // The lean server took the request as expected (so the comparison compared the two paths).
      const now = await leanCounts(lean.server.url);
      assert.deepEqual(
        { answered: now.answered - taken.answered, handed_over: now.handed_over - taken.handed_over },
        { answered: c.lean === "answered" ? 1 : 0, handed_over: c.lean === "handed_over" ? 1 : 0 },
      );
    });
  }

  it("counted every RPC alike (method, protocol, code; executions, denials, replays)", async () => {
    assert.deepEqual(await rpcCounters(lean), await rpcCounters(connectEs));
  });

  it("with OPENEXEC_LEAN_UNARY=off, the lean path takes nothing", async () => {
    assert.deepEqual(await leanCounts(connectEs.server.url), { answered: 0, handed_over: 0 });
  });
});
