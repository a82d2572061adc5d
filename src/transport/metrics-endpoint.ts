import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Rejection } from "../errors/reason.js";
import type { NodeRequest, NodeResponse } from "../http/node-http.js";
import type { ServerMetrics } from "../observability/metrics.js";
import { writeRejection } from "./http-errors.js";

/** GET /metrics: the Prometheus text exposition; any other method is 405. */
export async function serveMetrics(req: NodeRequest, res: NodeResponse, metrics: ServerMetrics): Promise<void> {
  if (req.method !== "GET" && req.method !== "HEAD") {
    writeRejection(res, new Rejection("method_not_allowed", "/metrics accepts GET"), { allow: "GET" });
    return;
  }
  const text = await metrics.exposition();
  res.writeHead(200, {
    "content-type": metrics.contentType,
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
  });
  if (req.method === "HEAD") res.end();
  else res.end(text);
}

/**
 * OPENEXEC_METRICS_PORT: /metrics alone on its own port (an admin port a
 * scraper reaches and callers do not); every other path is 404.
 */
export async function listenMetrics(
  metrics: ServerMetrics,
  host: string,
  port: number,
): Promise<{ server: Server; address: AddressInfo }> {
  const server = createServer((req, res) => {
    if ((req.url ?? "/").split("?", 1)[0] === "/metrics") {
      serveMetrics(req, res, metrics).catch(() => res.destroy());
      return;
    }
    writeRejection(res, new Rejection("route_not_found", "this port serves /metrics only"));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return { server, address: server.address() as AddressInfo };
}
