import type { DescMethod } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, createContextKey, type HandlerContext } from "@connectrpc/connect";

/** What a call's context is made of: the call, how it arrived, and what ends it. */
export interface CallContextInit {
  readonly method: DescMethod;
  /** As handlers see it in `context.protocolName`: "rest", "connect", "grpc". */
  readonly protocolName: string;
  /** "GET" or "POST", as the HTTP request had it. */
  readonly requestMethod: string;
  readonly url: string;
  readonly requestHeader: Headers;
  readonly contextValues: ContextValues;
  /** The deadline the client sent (grpc-timeout, connect-timeout-ms), if any. */
  readonly timeoutMs?: number;
  /** Subscribes to the client going away before the answer is sent; returns the unsubscription. */
  readonly onClientGone?: (listener: () => void) => () => void;
  /** The server's shutdown. */
  readonly shutdownSignal?: AbortSignal;
  /** What the response headers and trailers start as (the protocol's own, e.g. its content type). */
  readonly responseHeader?: Record<string, string>;
  readonly responseTrailer?: Record<string, string>;
}

/** A handler context, and the call's end: the signal fires, timers and listeners go. */
export interface CallContext extends HandlerContext {
  finish(): void;
}

/**
 * The context a unary handler sees, for the calls OpenExec dispatches itself
 * (the REST bindings and the lean unary path). connect-es builds two
 * AbortControllers for every call, links them to the request, and aborts them
 * when it ends (a DOMException each time); no unary handler here reads the
 * signal, so it is made only when one asks for it, and is then linked and
 * aborted exactly as connect-es's would be (deadline, client gone, call done).
 */
export function createCallContext(init: CallContextInit): CallContext {
  const deadline = init.timeoutMs === undefined ? undefined : Date.now() + init.timeoutMs;
  let controller: AbortController | undefined;
  let timer: NodeJS.Timeout | undefined;
  let unsubscribe: (() => void) | undefined;
  let finished = false;
  const signal = (): AbortSignal => {
    if (controller !== undefined) return controller.signal;
    const made = new AbortController();
    controller = made;
    if (finished) {
      made.abort();
      return made.signal;
    }
    if (deadline !== undefined) {
      const abortAtDeadline = () => made.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded));
      const left = deadline - Date.now();
      if (left <= 0) abortAtDeadline();
      else timer = setTimeout(abortAtDeadline, left);
    }
    const goneAway = init.onClientGone?.(() => made.abort(new ConnectError("the client went away", Code.Canceled)));
    const shutdown = init.shutdownSignal;
    const onShutdown = () => made.abort(shutdown?.reason);
    if (shutdown?.aborted === true) onShutdown();
    else shutdown?.addEventListener("abort", onShutdown, { once: true });
    unsubscribe = () => {
      goneAway?.();
      shutdown?.removeEventListener("abort", onShutdown);
    };
    return made.signal;
  };
  return {
    method: init.method,
    service: init.method.parent,
    protocolName: init.protocolName,
    requestMethod: init.requestMethod,
    url: init.url,
    requestHeader: init.requestHeader,
    responseHeader: new Headers(init.responseHeader),
    responseTrailer: new Headers(init.responseTrailer),
    values: init.contextValues,
    timeoutMs: () => (deadline === undefined ? undefined : deadline - Date.now()),
    get signal() {
      return signal();
    },
    finish() {
      if (finished) return;
      finished = true;
      if (timer !== undefined) clearTimeout(timer);
      unsubscribe?.();
      if (controller !== undefined && !controller.signal.aborted) controller.abort();
    },
  };
}

/** Where a call's context is kept for the chain's last link and for the transport that answers it. */
export const callContextKey = createContextKey<CallContext | undefined>(undefined, {
  description: "openexec call context",
});

/** The context of a call made through the unary caller (its handler's response headers and trailers). */
export function callContextOf(values: ContextValues): CallContext | undefined {
  return values.get(callContextKey);
}
