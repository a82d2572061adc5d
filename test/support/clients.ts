import type { DescService } from "@bufbuild/protobuf";
import { type Client, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

export type ProtocolName = "connect-json" | "connect-binary" | "grpc" | "grpc-web" | "connect-h2";

/** Every way in that generated clients use, for tests that run once per protocol. */
export const protocols: readonly ProtocolName[] = ["connect-json", "connect-binary", "grpc", "grpc-web", "connect-h2"];

export function transportFor(protocol: ProtocolName, baseUrl: string): Transport {
  switch (protocol) {
    case "connect-json":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false });
    case "connect-binary":
      return createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: true });
    case "connect-h2":
      return createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: false });
    case "grpc":
      return createGrpcTransport({ baseUrl });
    case "grpc-web":
      return createGrpcWebTransport({ baseUrl, httpVersion: "1.1" });
  }
}

export function clientFor<S extends DescService>(service: S, protocol: ProtocolName, baseUrl: string): Client<S> {
  return createClient(service, transportFor(protocol, baseUrl));
}

// biome-ignore lint/suspicious/noExplicitAny: tests read response bodies field by field and assert each.
export type AnyJson = any;

/** POSTs JSON to a REST path and returns status, headers and parsed body. */
export async function postJson(
  url: string,
  body: unknown,
  headers: Record<string, string> = { "content-type": "application/json" },
): Promise<{ status: number; headers: Headers; body: AnyJson }> {
  const response = await fetch(url, {
    method: "POST",
    headers,
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === "" ? undefined : JSON.parse(text) };
}

export async function getJson(url: string): Promise<{ status: number; body: AnyJson }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}
