import assert from "node:assert/strict";
import http from "node:http";
import { after, before, describe, it } from "node:test";
import { create, toBinary } from "@bufbuild/protobuf";
import { ExecuteRequestSchema } from "../gen/openexec/v1/execution_pb.js";
import { builtinActions } from "../src/actions/builtin.js";
import { ConfigError, loadServerConfig } from "../src/config/server-config.js";
import type { AnyJson } from "./support/clients.js";
import { envelope } from "./support/raw-rpc.js";
import { startTestServer, type TestServer } from "./support/test-server.js";

const allowed = "https://app.example";
const other = "http://localhost:8080";
const executePath = "/openexec.v1.ExecutionService/Execute";
const getHealthPath = "/openexec.v1.InfoService/GetHealth";

/** Exactly what a preflight from an allowed origin is answered with (src/transport/cors.ts). */
const preflightHeaders = {
  "access-control-allow-origin": allowed,
  "access-control-allow-methods": "POST, GET",
  "access-control-allow-headers":
    "Content-Type, Connect-Protocol-Version, Connect-Timeout-Ms, Connect-Content-Encoding, Connect-Accept-Encoding, Content-Encoding, Accept-Encoding, Grpc-Message-Type, X-Grpc-Web, X-User-Agent, Grpc-Timeout",
  "access-control-max-age": "7200",
  vary: "Origin",
};

/** Exactly what every other answer to an allowed origin carries. */
const actualHeaders = {
  "access-control-allow-origin": allowed,
  "access-control-expose-headers":
    "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Content-Encoding, Connect-Content-Encoding, openexec-reason",
  vary: "Origin",
};

/** The CORS-relevant headers of an answer: every Access-Control-* header, and Vary. */
function corsHeadersOf(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, name) => {
    if (name.startsWith("access-control-") || name === "vary") out[name] = value;
  });
  return out;
}

function preflight(url: string, origin: string, method: string, requestHeaders: string): Promise<Response> {
  return fetch(url, {
    method: "OPTIONS",
    headers: { origin, "access-control-request-method": method, "access-control-request-headers": requestHeaders },
  });
}

function connectExecute(url: string, origin: string, body: unknown): Promise<Response> {
  return fetch(`${url}${executePath}`, {
    method: "POST",
    headers: { origin, "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify(body),
  });
}

function grpcWebExecute(url: string, origin: string, path: string, body: unknown): Promise<Response> {
  const message = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, body as never));
  return fetch(`${url}${path}`, {
    method: "POST",
    headers: { origin, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
    body: envelope(message),
  });
}

function restExecute(url: string, origin: string, body: unknown): Promise<Response> {
  return fetch(`${url}/execute`, {
    method: "POST",
    headers: { origin, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

describe("CORS, with OPENEXEC_CORS_ORIGINS set", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ OPENEXEC_CORS_ORIGINS: `${allowed}, ${other}` });
  });
  after(() => server.close());

  it("answers a Connect JSON preflight on an RPC path 204 with the methods and headers Connect needs", async () => {
    const answer = await preflight(
      `${server.url}${executePath}`,
      allowed,
      "POST",
      "content-type,connect-protocol-version,connect-timeout-ms",
    );
    assert.equal(answer.status, 204);
    assert.deepEqual(corsHeadersOf(answer.headers), preflightHeaders);
    assert.equal(await answer.text(), "");
  });

  it("answers a gRPC-web preflight (and one for a Connect GET) the same way", async () => {
    const grpcWeb = await preflight(
      `${server.url}${executePath}`,
      allowed,
      "POST",
      "content-type,x-grpc-web,x-user-agent",
    );
    assert.equal(grpcWeb.status, 204);
    assert.deepEqual(corsHeadersOf(grpcWeb.headers), preflightHeaders);
    const get = await preflight(`${server.url}${getHealthPath}`, allowed, "GET", "connect-protocol-version");
    assert.equal(get.status, 204);
    assert.deepEqual(corsHeadersOf(get.headers), preflightHeaders);
  });

  it("answers a preflight for POST /execute 204, for every configured origin", async () => {
    const rest = await preflight(`${server.url}/execute`, allowed, "POST", "content-type");
    assert.equal(rest.status, 204);
    assert.deepEqual(corsHeadersOf(rest.headers), preflightHeaders);
    const second = await preflight(`${server.url}/execute`, other, "POST", "content-type");
    assert.equal(second.status, 204);
    assert.deepEqual(corsHeadersOf(second.headers), { ...preflightHeaders, "access-control-allow-origin": other });
  });

  it("answers a preflight on a path nothing serves too, so that the page reads route_not_found", async () => {
    const answer = await preflight(`${server.url}/nowhere`, allowed, "POST", "content-type");
    assert.equal(answer.status, 204);
    assert.deepEqual(corsHeadersOf(answer.headers), preflightHeaders);
    const request = await connectExecute(`${server.url}/nowhere`, allowed, {});
    assert.equal(request.status, 404);
    assert.deepEqual(corsHeadersOf(request.headers), actualHeaders);
    assert.equal(request.headers.get("openexec-reason"), "route_not_found");
  });

  it("refuses a preflight from any other origin 403 origin_not_allowed, without CORS headers", async () => {
    // Exact origins only: another scheme, port or host (a suffix included) is another origin.
    for (const origin of ["https://evil.example", "http://app.example", "https://app.example:8443", "null"]) {
      for (const path of [executePath, "/execute", "/nowhere"]) {
        const answer = await preflight(`${server.url}${path}`, origin, "POST", "content-type");
        assert.equal(answer.status, 403, `${origin} ${path}`);
        assert.deepEqual(corsHeadersOf(answer.headers), { vary: "Origin" }, `${origin} ${path}`);
        assert.equal(answer.headers.get("openexec-reason"), "origin_not_allowed");
        assert.deepEqual((await answer.json()) as AnyJson, {
          code: "permission_denied",
          reason: "origin_not_allowed",
          message: "this origin may not call the server; see OPENEXEC_CORS_ORIGINS",
        });
      }
    }
  });

  it("puts Allow-Origin and Expose-Headers on Connect answers, success and refusal", async () => {
    const body = { action: "add", payload: { a: 1, b: 2 }, nonce: "cors-connect" };
    const ok = await connectExecute(server.url, allowed, body);
    assert.equal(ok.status, 200);
    assert.deepEqual(corsHeadersOf(ok.headers), actualHeaders);
    assert.equal(((await ok.json()) as AnyJson).status, "EXECUTION_STATUS_EXECUTED");
    const reused = await connectExecute(server.url, allowed, { ...body, payload: { a: 2, b: 2 } });
    assert.equal(reused.status, 409);
    assert.deepEqual(corsHeadersOf(reused.headers), actualHeaders);
    assert.equal(reused.headers.get("openexec-reason"), "nonce_reused");
  });

  it("puts them on gRPC-web answers, success, refusal in trailers, and trailers-only refusal", async () => {
    const body = { action: "add", payload: { a: 1, b: 2 }, nonce: "cors-grpc-web" };
    const ok = await grpcWebExecute(server.url, allowed, executePath, body);
    assert.equal(ok.status, 200);
    assert.deepEqual(corsHeadersOf(ok.headers), actualHeaders);
    assert.match(Buffer.from(await ok.arrayBuffer()).toString("latin1"), /grpc-status: ?0\r\n/);
    const reused = await grpcWebExecute(server.url, allowed, executePath, { ...body, payload: { a: 2, b: 2 } });
    assert.deepEqual(corsHeadersOf(reused.headers), actualHeaders);
    assert.match(Buffer.from(await reused.arrayBuffer()).toString("latin1"), /openexec-reason: nonce_reused\r\n/);
    const unknown = await grpcWebExecute(server.url, allowed, "/openexec.v1.NoSuchService/Execute", body);
    assert.deepEqual(corsHeadersOf(unknown.headers), actualHeaders);
    assert.equal(unknown.headers.get("grpc-status"), "5");
    assert.equal(unknown.headers.get("openexec-reason"), "route_not_found");
  });

  it("puts them on REST answers, success and refusal (nonce_reused 409)", async () => {
    const body = { action: "add", payload: { a: 1, b: 2 }, nonce: "cors-rest" };
    const ok = await restExecute(server.url, allowed, body);
    assert.equal(ok.status, 200);
    assert.deepEqual(corsHeadersOf(ok.headers), actualHeaders);
    const reused = await restExecute(server.url, allowed, { ...body, payload: { a: 2, b: 2 } });
    assert.equal(reused.status, 409);
    assert.deepEqual(corsHeadersOf(reused.headers), actualHeaders);
    assert.equal(((await reused.json()) as AnyJson).reason, "nonce_reused");
  });

  it("answers another origin's requests without CORS headers, so that its page cannot read them", async () => {
    const answer = await restExecute(server.url, "https://evil.example", {
      action: "add",
      payload: { a: 1, b: 2 },
      nonce: "cors-evil",
    });
    assert.equal(answer.status, 200);
    assert.deepEqual(corsHeadersOf(answer.headers), { vary: "Origin" });
    // Without Origin (no browser, or a same-origin GET): still Vary, as the answer depends on it.
    const plain = await fetch(`${server.url}/health`);
    assert.equal(plain.status, 200);
    assert.deepEqual(corsHeadersOf(plain.headers), { vary: "Origin" });
  });

  it("keeps the Host check: a preflight to a Host not allowed is 403 host_not_allowed, readable by the page", async () => {
    const answer = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = http.request(`${server.url}/execute`, {
        method: "OPTIONS",
        headers: { host: "rebound.example", origin: allowed, "access-control-request-method": "POST" },
      });
      request.on("response", resolve).on("error", reject).end();
    });
    answer.resume();
    assert.equal(answer.statusCode, 403);
    assert.equal(answer.headers["openexec-reason"], "host_not_allowed");
    assert.equal(answer.headers["access-control-allow-origin"], allowed);
  });
});

describe("CORS, with OPENEXEC_CORS_ORIGINS unset (the default)", () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(() => server.close());

  it("answers a preflight as any other OPTIONS (405) and no answer carries a CORS header", async () => {
    for (const path of [executePath, "/execute"]) {
      const answer = await preflight(`${server.url}${path}`, allowed, "POST", "content-type");
      assert.equal(answer.status, 405, path);
      assert.equal(answer.headers.get("openexec-reason"), "method_not_allowed");
      assert.deepEqual(corsHeadersOf(answer.headers), {}, path);
    }
    const body = { action: "add", payload: { a: 1, b: 2 }, nonce: "cors-off" };
    for (const answer of [
      await connectExecute(server.url, allowed, body),
      await grpcWebExecute(server.url, allowed, executePath, body),
      await restExecute(server.url, allowed, body),
      await restExecute(server.url, allowed, { ...body, payload: { a: 2, b: 2 } }),
    ]) {
      assert.deepEqual(corsHeadersOf(answer.headers), {});
    }
  });
});

describe("OPENEXEC_CORS_ORIGINS validation", () => {
  const names = builtinActions.map((action) => action.name);

  it("keeps exact origins as given", () => {
    const config = loadServerConfig(
      { OPENEXEC_CORS_ORIGINS: " https://app.example , http://localhost:8080,,http://[::1]:3000" },
      {},
      names,
    );
    assert.deepEqual([...config.corsOrigins], ["https://app.example", "http://localhost:8080", "http://[::1]:3000"]);
    assert.deepEqual([...loadServerConfig({}, {}, names).corsOrigins], []);
  });

  it("lists every entry a browser would never send as a problem", () => {
    const entries = [
      "*",
      "https://*.example",
      "null",
      "app.example",
      "ftp://app.example",
      "https://app.example/",
      "https://App.Example",
      "https://app.example:443",
      "https://user@app.example",
    ];
    assert.throws(
      () => loadServerConfig({ OPENEXEC_CORS_ORIGINS: entries.join(",") }, {}, names),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.deepEqual(error.problems, [
          'OPENEXEC_CORS_ORIGINS: "*" is a wildcard; list each origin exactly (scheme://host[:port])',
          'OPENEXEC_CORS_ORIGINS: "https://*.example" is a wildcard; list each origin exactly (scheme://host[:port])',
          'OPENEXEC_CORS_ORIGINS: "null" is the opaque origin of sandboxed and file: pages and cannot be allowed',
          'OPENEXEC_CORS_ORIGINS: "app.example" is not an origin (scheme://host[:port])',
          'OPENEXEC_CORS_ORIGINS: "ftp://app.example" must start with http:// or https://',
          'OPENEXEC_CORS_ORIGINS: "https://app.example/" must be written as a browser sends it: https://app.example (no path, user, query or default port; lower case)',
          'OPENEXEC_CORS_ORIGINS: "https://App.Example" must be written as a browser sends it: https://app.example (no path, user, query or default port; lower case)',
          'OPENEXEC_CORS_ORIGINS: "https://app.example:443" must be written as a browser sends it: https://app.example (no path, user, query or default port; lower case)',
          'OPENEXEC_CORS_ORIGINS: "https://user@app.example" must be written as a browser sends it: https://app.example (no path, user, query or default port; lower case)',
        ]);
        return true;
      },
    );
  });
});
