import assert from "node:assert/strict";
import { getEventListeners } from "node:events";
import { describe, it } from "node:test";
import { Code, ConnectError, createContextValues } from "@connectrpc/connect";
import { ExecutionService } from "../../gen/openexec/v1/execution_pb.js";
import { type CallContextInit, createCallContext } from "./call-context.js";

const base: CallContextInit = {
  method: ExecutionService.method.execute,
  protocolName: "connect",
  requestMethod: "POST",
  url: "http://127.0.0.1/openexec.v1.ExecutionService/Execute",
  requestHeader: new Headers({ "content-type": "application/json" }),
  contextValues: createContextValues(),
};

/** A stand-in for the transport's "client went away" subscription, counting subscribers. */
function clientGone() {
  const listeners = new Set<() => void>();
  return {
    subscribe: (listener: () => void) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    leave: () => {
      for (const listener of listeners) listener();
    },
    subscribers: () => listeners.size,
  };
}

describe("the call context", () => {
  it("starts its response headers and trailers as the transport says, and describes the call", () => {
    const context = createCallContext({
      ...base,
      responseHeader: { "content-type": "application/grpc+proto" },
      responseTrailer: { "grpc-status": "0" },
    });
    assert.equal(context.responseHeader.get("content-type"), "application/grpc+proto");
    assert.equal(context.responseTrailer.get("grpc-status"), "0");
    assert.equal(context.service, ExecutionService);
    assert.equal(context.timeoutMs(), undefined);
    context.finish();
  });

  it("subscribes to nothing until a handler asks for the signal", () => {
    const client = clientGone();
    const shutdown = new AbortController();
    const context = createCallContext({ ...base, onClientGone: client.subscribe, shutdownSignal: shutdown.signal });
    assert.equal(client.subscribers(), 0);
    context.finish();
    // Asked for after the call: already aborted, as connect-es aborts its signal when a call completes.
    assert.equal(context.signal.aborted, true);
    assert.equal(client.subscribers(), 0);
  });

  it("fires when the client goes away, and lets go of the subscription when the call ends", () => {
    const client = clientGone();
    const context = createCallContext({ ...base, onClientGone: client.subscribe });
    const { signal } = context;
    assert.equal(client.subscribers(), 1);
    client.leave();
    assert.equal(signal.aborted, true);
    assert.ok(signal.reason instanceof ConnectError);
    assert.equal((signal.reason as ConnectError).code, Code.Canceled);
    context.finish();
    assert.equal(client.subscribers(), 0);
  });

  it("fires at the deadline with deadline_exceeded", async () => {
    const context = createCallContext({ ...base, timeoutMs: 20 });
    const left = context.timeoutMs();
    assert.ok(left !== undefined && left <= 20);
    const reason = await new Promise<unknown>((resolve) =>
      context.signal.addEventListener("abort", () => resolve(context.signal.reason), { once: true }),
    );
    assert.equal((reason as ConnectError).code, Code.DeadlineExceeded);
    context.finish();
  });

  it("a deadline already past fires at once", () => {
    const context = createCallContext({ ...base, timeoutMs: 0 });
    assert.equal(context.signal.aborted, true);
    context.finish();
  });

  it("fires with the server's shutdown, and stops listening to it when the call ends", () => {
    const shutdown = new AbortController();
    const context = createCallContext({ ...base, shutdownSignal: shutdown.signal });
    const { signal } = context;
    assert.equal(getEventListeners(shutdown.signal, "abort").length, 1);
    context.finish();
    assert.equal(signal.aborted, true, "a finished call's signal is aborted");
    assert.equal(getEventListeners(shutdown.signal, "abort").length, 0);
    const other = createCallContext({ ...base, shutdownSignal: shutdown.signal });
    const otherSignal = other.signal;
    shutdown.abort(new Error("stopping"));
    assert.equal(otherSignal.aborted, true);
    assert.equal((otherSignal.reason as Error).message, "stopping");
    other.finish();
  });
});
