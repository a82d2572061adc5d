import { create, type DescMessage, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import type { Interceptor, UnaryRequest, UnaryResponse } from "@connectrpc/connect";
import { type CallContext, type CallContextInit, callContextKey, createCallContext } from "./call-context.js";
import type { ServedService } from "./routes.js";

/**
 * How a unary call arrived, for the callers other than connect-es (the REST
 * bindings, the lean unary path): the call context's facts (call-context.ts),
 * with the request's headers as `header`.
 */
export type UnaryCallInit = Omit<CallContextInit, "method" | "requestHeader"> & { readonly header: Headers };

export type UnaryCaller = <I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  message: MessageShape<I>,
  init: UnaryCallInit,
) => Promise<UnaryResponse<I, O>>;

/**
 * Calls a unary method's implementation through the same interceptors
 * connect-es runs for Connect, gRPC and gRPC-web: the REST paths and the lean
 * unary path are callers of this, so every way in meets the same chain
 * (refusals turned into reason codes once, metrics and access logs once).
 */
export function createUnaryCaller(
  services: readonly ServedService[],
  interceptors: readonly Interceptor[],
): UnaryCaller {
  type Call = (request: UnaryRequest) => Promise<UnaryResponse>;
  const chains = new Map<string, Call>();
  for (const { service, impl } of services) {
    for (const method of service.methods) {
      const fn = (impl as Record<string, unknown>)[method.localName];
      if (typeof fn !== "function" || method.methodKind !== "unary") continue;
      const run = fn.bind(impl) as (message: unknown, context: unknown) => unknown;
      const last: Call = async (request) => {
        const context = request.contextValues.get(callContextKey);
        const output = await run(request.message, handlerContext(context, request));
        return {
          stream: false,
          service: method.parent,
          method,
          header: context?.responseHeader ?? new Headers(),
          trailer: context?.responseTrailer ?? new Headers(),
          message: create(method.output, output as never),
        } as UnaryResponse;
      };
      // The chain is composed once per method, not once per call.
      const chain = [...interceptors].reduceRight((next, interceptor) => interceptor(next as never) as Call, last);
      chains.set(`${service.typeName}/${method.name}`, chain);
    }
  }
  return async <I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    message: MessageShape<I>,
    init: UnaryCallInit,
  ): Promise<UnaryResponse<I, O>> => {
    const chain = chains.get(`${method.parent.typeName}/${method.name}`);
    if (chain === undefined) throw new Error(`no implementation of ${method.parent.typeName}/${method.name}`);
    const context = createCallContext({ ...init, method, requestHeader: init.header });
    init.contextValues.set(callContextKey, context);
    try {
      const response = (await chain({
        stream: false,
        service: method.parent,
        method,
        requestMethod: init.requestMethod,
        url: init.url,
        get signal() {
          return context.signal;
        },
        header: init.header,
        contextValues: init.contextValues,
        message,
      } as UnaryRequest)) as UnaryResponse<I, O>;
      // An interceptor may answer with headers of its own: they become the call's, as under connect-es.
      replaceHeaders(response.header, context.responseHeader);
      replaceHeaders(response.trailer, context.responseTrailer);
      return response;
    } finally {
      context.finish();
    }
  };
}

/**
 * What the handler sees: the call's context, with the request's headers,
 * signal and values as the interceptors passed them on (connect-es's rule).
 */
function handlerContext(context: CallContext | undefined, request: UnaryRequest): unknown {
  if (context === undefined) return undefined;
  if (request.header === context.requestHeader && request.contextValues === context.values) return context;
  return Object.create(context, {
    requestHeader: { value: request.header },
    values: { value: request.contextValues },
    signal: { get: () => request.signal },
  });
}

function replaceHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  for (const name of [...to.keys()]) to.delete(name);
  from.forEach((value, name) => {
    to.set(name, value);
  });
}
