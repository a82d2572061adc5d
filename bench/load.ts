import { type Agent, type IncomingHttpHeaders, request } from "node:http";
import { type ClientHttp2Session, constants } from "node:http2";
import { performance } from "node:perf_hooks";

export interface PhaseOptions {
  /** Requests kept in flight at once (closed loop: each worker sends its next request when the last one is answered). */
  readonly concurrency: number;
  readonly durationMs: number;
  /** A hard cap on the requests of one phase, whatever the duration. */
  readonly maxRequests: number;
  /** A phase gives up once this many requests have failed. */
  readonly maxErrors: number;
}

export interface Phase {
  /** Latency (ms) of every successful request. */
  readonly latencies: number[];
  readonly errors: number;
  /** From the first request sent to the last answer received. */
  readonly seconds: number;
  readonly firstError: string | undefined;
}

/** Sends one request; `seq` is unique per client, for nonces. Rejects when the request failed. */
export type Send = (seq: number) => Promise<void>;

/**
 * Closed-loop load for `durationMs`: `concurrency` workers, each sending back to back, bounded by time,
 * by count and by errors. Requests in flight at the deadline are awaited, so the phase ends with none.
 */
export async function runPhase(send: Send, options: PhaseOptions, nextSeq: () => number): Promise<Phase> {
  const latencies: number[] = [];
  let errors = 0;
  let started = 0;
  let firstError: string | undefined;
  const start = performance.now();
  const deadline = start + options.durationMs;
  const worker = async () => {
    while (performance.now() < deadline && started < options.maxRequests && errors < options.maxErrors) {
      started++;
      const sentAt = performance.now();
      try {
        await send(nextSeq());
        latencies.push(performance.now() - sentAt);
      } catch (error) {
        errors++;
        firstError ??= error instanceof Error ? error.message : String(error);
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, worker));
  return { latencies, errors, seconds: (performance.now() - start) / 1000, firstError };
}

/** Nearest-rank percentile of ascending values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[rank] ?? Number.NaN;
}

/** POSTs a JSON body over HTTP/1.1 on `agent`; resolves with the parsed answer of a 200, rejects otherwise. */
export function postJson(
  agent: Agent,
  url: URL,
  body: string,
  headers: Record<string, string>,
  timeoutMs: number,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      {
        method: "POST",
        agent,
        timeout: timeoutMs,
        headers: { ...headers, "content-type": "application/json", "content-length": String(Buffer.byteLength(body)) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("error", reject);
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200) {
            reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`));
            return;
          }
          try {
            resolve(JSON.parse(text));
          } catch (error) {
            reject(error);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(body);
  });
}

/** GETs `url` over HTTP/1.1 on `agent`; resolves with the body of a 200, rejects otherwise. */
export function getBody(agent: Agent, url: string, timeoutMs: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("error", reject);
      res.on("end", () => {
        if (res.statusCode === 200) resolve(Buffer.concat(chunks));
        else reject(new Error(`${url} answered ${res.statusCode}`));
      });
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end();
  });
}

/** Sockets an agent holds open (busy or idle) to any host: how many connections the load really used. */
export function agentSockets(agent: Agent): number {
  const count = (pool: NodeJS.ReadOnlyDict<unknown[]>) =>
    Object.values(pool).reduce((sum, list) => sum + (list?.length ?? 0), 0);
  return count(agent.sockets) + count(agent.freeSockets);
}

/**
 * One unary gRPC call on an HTTP/2 session: `message` is the serialised request.
 * Resolves when the call ended with grpc-status 0; rejects otherwise.
 */
export function grpcUnary(
  session: ClientHttp2Session,
  path: string,
  message: Uint8Array,
  timeoutMs: number,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    frame.set(message, 5);
    const stream = session.request(
      { ":method": "POST", ":path": path, "content-type": "application/grpc+proto", te: "trailers" },
      { endStream: false },
    );
    let status: string | undefined;
    let grpcMessage = "";
    const onHeaders = (headers: IncomingHttpHeaders) => {
      const value = headers["grpc-status"];
      if (typeof value === "string") {
        status = value;
        grpcMessage = decodeURIComponent(String(headers["grpc-message"] ?? ""));
      }
    };
    stream.setTimeout(timeoutMs, () => stream.close(constants.NGHTTP2_CANCEL));
    stream.on("response", onHeaders);
    stream.on("trailers", onHeaders);
    stream.on("data", () => {});
    stream.on("error", reject);
    stream.on("close", () => {
      if (status === "0") resolve();
      else reject(new Error(`gRPC call ended with status ${status ?? "(none)"} ${grpcMessage}`));
    });
    stream.end(frame);
  });
}
