import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { Code } from "@connectrpc/connect";
import { build } from "esbuild";
import { ExecutionService } from "../gen/openexec/v1/execution_pb.js";
import { ExecutionStatus } from "../gen/openexec/v1/receipt_pb.js";
import { packageRoot } from "../src/version.js";
import type { CallOutcome, PageReport, ProtocolOutcomes } from "./browser/cors-page.js";
import { clientFor } from "./support/clients.js";
import { scratchDir, startTestServer, type TestServer } from "./support/test-server.js";

/**
 * A real browser calling the server from another origin, as a web app with
 * connect-web would: the CORS answers (preflights, Allow-Origin, the exposed
 * headers) are judged by Chromium, not by our reading of the standard.
 */

/** Debian's `chromium` (apt-get install chromium); CI installs it (.ci/run). */
const chromium = ["chromium", "chromium-browser"].find(
  (name) => spawnSync(name, ["--version"], { stdio: "ignore" }).status === 0,
);
const skip =
  chromium === undefined && process.env.CI !== "true"
    ? "chromium is not installed (apt-get install chromium): the real-browser CORS test is skipped"
    : false;

/**
 * Serves the page (HTML and its connect-web bundle) on origins other than the
 * server's, and receives what the page reports when it is done.
 */
class PageServer {
  private constructor(
    readonly http: Server,
    readonly port: number,
    /** nonce → the run waiting for that page's report. */
    readonly reports: Map<string, (report: PageReport) => void>,
  ) {}

  static async start(): Promise<PageServer> {
    const bundle = await build({
      entryPoints: [join(packageRoot, "test/browser/cors-page.ts")],
      bundle: true,
      format: "iife",
      platform: "browser",
      target: "es2022",
      write: false,
      logLevel: "silent",
    });
    const script = bundle.outputFiles[0]?.contents ?? new Uint8Array();
    const html = '<!doctype html><html><body><pre id="results"></pre><script src="/page.js"></script></body></html>';
    const reports = new Map<string, (report: PageReport) => void>();
    const http = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://page");
      if (url.pathname === "/page.js") {
        res.writeHead(200, { "content-type": "text/javascript" }).end(script);
      } else if (url.pathname === "/results" && req.method === "POST") {
        let body = "";
        req.setEncoding("utf8").on("data", (chunk: string) => {
          body += chunk;
        });
        req.on("end", () => {
          res.writeHead(204).end();
          reports.get(url.searchParams.get("nonce") ?? "")?.(JSON.parse(body) as PageReport);
        });
      } else {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
      }
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    return new PageServer(http, (http.address() as AddressInfo).port, reports);
  }

  /**
   * Opens the page at `origin` in headless Chromium, calling `server` with
   * nonces starting with `nonce`, and returns its report. Chromium is stopped
   * once the page has reported.
   */
  async run(origin: string, server: string, nonce: string): Promise<PageReport> {
    const profile = scratchDir("openexec-chromium-");
    const url = `${origin}/?server=${encodeURIComponent(server)}&nonce=${encodeURIComponent(nonce)}`;
    const browser = spawn(
      chromium ?? "chromium",
      [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        `--user-data-dir=${profile.path}`,
        url,
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    let stderr = "";
    browser.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk;
    });
    const exited = new Promise<void>((resolve) => {
      browser.once("exit", () => resolve());
      browser.once("error", () => resolve());
    });
    try {
      return await new Promise<PageReport>((resolve, reject) => {
        this.reports.set(nonce, resolve);
        void exited.then(() => reject(new Error(`chromium exited before the page reported:\n${stderr}`)));
        // A guard against a hung browser, not a measurement.
        setTimeout(() => reject(new Error(`the page did not report:\n${stderr}`)), 120_000).unref();
      });
    } finally {
      this.reports.delete(nonce);
      // SIGTERM to the browser process: it stops its renderers and reaps them itself.
      if (browser.exitCode === null) browser.kill("SIGTERM");
      await exited;
      // Chromium's helper processes may still be writing its profile for a moment after it exits:
      // remove it with retries, and never fail the test over a temporary directory.
      try {
        rmSync(profile.path, { recursive: true, force: true, maxRetries: 20, retryDelay: 100 });
      } catch {
        // left for the OS's temporary-file cleanup
      }
    }
  }

  close(): void {
    this.http.close();
  }
}

/** The page's outcomes per protocol; a page that failed to run fails the test with its error. */
function outcomesOf(report: PageReport): Array<[string, ProtocolOutcomes]> {
  assert.ok(!("pageError" in report), `the page failed: ${JSON.stringify(report)}`);
  return Object.entries(report);
}

/** The error a call ended with, as the page saw it. */
function errorOf(outcome: CallOutcome) {
  assert.ok("error" in outcome, `expected an error, got ${JSON.stringify(outcome)}`);
  return outcome.error;
}

describe("a browser page on another origin (Chromium, connect-web)", { skip }, () => {
  let pages: PageServer;
  let server: TestServer;
  before(async () => {
    // Only CI=true gets here without chromium: there, a missing browser is a failure, not a skip.
    assert.ok(chromium !== undefined, "chromium is not installed; .ci/run installs it (apt-get install chromium)");
    pages = await PageServer.start();
    // One page server, two origins: http://localhost:<port> is allowed, http://127.0.0.1:<port> is not.
    server = await startTestServer({ OPENEXEC_CORS_ORIGINS: `http://localhost:${pages.port}` });
  });
  after(async () => {
    await server?.close();
    pages?.close();
  });

  it("an allowed origin calls Execute over Connect and gRPC-web, and reads refusals' codes and reasons", async () => {
    const report = await pages.run(`http://localhost:${pages.port}`, server.url, "allowed");
    for (const [protocol, outcomes] of outcomesOf(report)) {
      assert.deepEqual(outcomes.executed, { ok: { status: ExecutionStatus.EXECUTED, replayed: false } }, protocol);
      const reused = errorOf(outcomes.reused);
      assert.equal(reused.code, Code.AlreadyExists, protocol);
      assert.equal(reused.reason, "nonce_reused", protocol);
      // gRPC-web answers this trailers-only: the status is in headers the page may only read when exposed.
      const unrouted = errorOf(outcomes.unrouted);
      assert.equal(unrouted.code, Code.NotFound, protocol);
      assert.equal(unrouted.reason, "route_not_found", protocol);
    }
  });

  it("another origin's calls fail in the browser, and the preflight refusal kept them from running", async () => {
    const report = await pages.run(`http://127.0.0.1:${pages.port}`, server.url, "refused");
    for (const [protocol, outcomes] of outcomesOf(report)) {
      for (const outcome of [outcomes.executed, outcomes.reused, outcomes.unrouted]) {
        // What fetch reports for a CORS failure: a TypeError, which connect-web passes on as unknown.
        assert.deepEqual(errorOf(outcome), { code: Code.Unknown, message: "Failed to fetch", reason: null }, protocol);
      }
    }
    // Had the page's Execute run, this nonce would be spent (replayed or nonce_reused).
    for (const nonce of ["refused-connect", "refused-grpc-web"]) {
      const answer = await clientFor(ExecutionService, "connect-json", server.url).execute({
        action: "add",
        payload: { a: 1, b: 2 },
        nonce,
      });
      assert.equal(answer.replayed, false, nonce);
    }
  });
});
