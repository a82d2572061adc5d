// Runs in Chromium, not in Node: test/browser-cors.spec.ts bundles it with
// connect-web into the page it serves from an origin other than the server's.
// It calls Execute the way a browser client does, over Connect and over
// gRPC-web, shows what each call saw in <pre id="results">, and posts it to
// its own origin's /results, where the test waits for it (a page that is
// done says so: no guessing when the browser is idle).
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import { ExecutionService } from "../../gen/openexec/v1/execution_pb.js";

/** What the page reports for one call: the answer's fields, or the error as the client saw it. */
export type CallOutcome =
  | { readonly ok: { readonly status: number; readonly replayed: boolean } }
  | { readonly error: { readonly code: number; readonly message: string; readonly reason: string | null } };

/** What the page reports for one protocol. */
export interface ProtocolOutcomes {
  /** A first Execute. */
  readonly executed: CallOutcome;
  /** The same nonce with another payload: 409 nonce_reused, in the body (Connect) or trailers (gRPC-web). */
  readonly reused: CallOutcome;
  /** A path no RPC serves: a refusal before any RPC runs (gRPC-web: trailers-only, status in the headers). */
  readonly unrouted: CallOutcome;
}

/** The few browser globals used here; the project type-checks against Node's, not the DOM's. */
const page = globalThis as unknown as {
  location: { search: string };
  document: { getElementById(id: string): { textContent: string | null } | null };
};

async function outcomeOf(call: Promise<{ status: number; replayed: boolean }>): Promise<CallOutcome> {
  try {
    const answer = await call;
    return { ok: { status: answer.status, replayed: answer.replayed } };
  } catch (thrown) {
    const error = ConnectError.from(thrown);
    // The reason header is visible to the page only if the server exposes it (Access-Control-Expose-Headers).
    return { error: { code: error.code, message: error.rawMessage, reason: error.metadata.get("openexec-reason") } };
  }
}

async function outcomesOf(
  transport: (baseUrl: string) => Transport,
  server: string,
  nonce: string,
): Promise<ProtocolOutcomes> {
  const client = createClient(ExecutionService, transport(server));
  const request = { action: "add", payload: { a: 1, b: 2 }, nonce };
  return {
    executed: await outcomeOf(client.execute(request)),
    reused: await outcomeOf(client.execute({ ...request, payload: { a: 2, b: 2 } })),
    unrouted: await outcomeOf(createClient(ExecutionService, transport(`${server}/nowhere`)).execute(request)),
  };
}

/** What the page posts to /results: its outcomes per protocol, or why it could not get them. */
export type PageReport =
  | { readonly connect: ProtocolOutcomes; readonly grpcWeb: ProtocolOutcomes }
  | { readonly pageError: string };

async function main(server: string, nonce: string): Promise<PageReport> {
  return {
    connect: await outcomesOf((baseUrl) => createConnectTransport({ baseUrl }), server, `${nonce}-connect`),
    grpcWeb: await outcomesOf((baseUrl) => createGrpcWebTransport({ baseUrl }), server, `${nonce}-grpc-web`),
  };
}

const query = new URLSearchParams(page.location.search);
void main(query.get("server") ?? "", query.get("nonce") ?? "")
  .catch((error: unknown): PageReport => ({ pageError: String(error) }))
  .then(async (report) => {
    const text = JSON.stringify(report);
    const out = page.document.getElementById("results");
    if (out !== null) out.textContent = text;
    await fetch(`/results?nonce=${encodeURIComponent(query.get("nonce") ?? "")}`, { method: "POST", body: text });
  });
