import { create, type DescMessage, type DescMethodUnary, type MessageShape } from "@bufbuild/protobuf";
import {
  type ContextValues,
  createHandlerContext,
  type Interceptor,
  type UnaryRequest,
  type UnaryResponse,
} from "@connectrpc/connect";
import type { ServedService } from "./routes.js";

/** How a unary call arrived, for a caller other than connect-es (the REST bindings). */
export interface UnaryCallInit {
  /** "GET" or "POST", as the HTTP request had it. */
  readonly requestMethod: string;
  readonly url: string;
  readonly header: Headers;
  readonly contextValues: ContextValues;
  readonly signal: AbortSignal;
  /** The protocol's name, as handlers see it in `context.protocolName` (e.g. "rest"). */
  readonly protocolName: string;
}

export type UnaryCaller = <I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  message: MessageShape<I>,
  init: UnaryCallInit,
) => Promise<UnaryResponse<I, O>>;

/**
 * Calls a unary method's implementation through the same interceptors
 * connect-es runs for Connect, gRPC and gRPC-web: the REST paths are bindings
 * onto these calls, so every way in meets the same chain (refusals turned
 * into reason codes once, metrics and access logs once).
 */
export function createUnaryCaller(
  services: readonly ServedService[],
  interceptors: readonly Interceptor[],
): UnaryCaller {
  const impls = new Map<string, (message: unknown, context: unknown) => unknown>();
  for (const { service, impl } of services) {
    for (const method of service.methods) {
      const fn = (impl as Record<string, unknown>)[method.localName];
      if (typeof fn === "function") impls.set(`${service.typeName}/${method.name}`, fn.bind(impl));
    }
  }
  return async <I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    message: MessageShape<I>,
    init: UnaryCallInit,
  ): Promise<UnaryResponse<I, O>> => {
    const impl = impls.get(`${method.parent.typeName}/${method.name}`);
    if (impl === undefined) throw new Error(`no implementation of ${method.parent.typeName}/${method.name}`);
    const last = async (request: UnaryRequest<I, O>): Promise<UnaryResponse<I, O>> => {
      const context = createHandlerContext({
        service: method.parent,
        method,
        protocolName: init.protocolName,
        requestMethod: init.requestMethod,
        url: init.url,
        requestHeader: request.header,
        contextValues: request.contextValues,
      });
      const output = (await impl(request.message, context)) as MessageShape<O>;
      return {
        stream: false,
        service: method.parent,
        method,
        header: context.responseHeader,
        trailer: context.responseTrailer,
        message: create(method.output, output as never) as MessageShape<O>,
      };
    };
    const chain = [...interceptors].reduceRight(
      (next, interceptor) => interceptor(next as never) as unknown as typeof last,
      last,
    );
    return chain({
      stream: false,
      service: method.parent,
      method,
      requestMethod: init.requestMethod,
      url: init.url,
      signal: init.signal,
      header: init.header,
      contextValues: init.contextValues,
      message,
    });
  };
}
