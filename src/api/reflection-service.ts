import { create, createRegistry, type DescFile, type DescService, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ServiceImpl } from "@connectrpc/connect";
import * as v1 from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** Request and response shapes shared by grpc.reflection.v1 and v1alpha (identical on the wire). */
type ReflectionRequest = v1.ServerReflectionRequest | v1alpha.ServerReflectionRequest;
type ResponseBody = Omit<v1.ServerReflectionResponse, "$typeName" | "originalRequest" | "validHost">["messageResponse"];

/**
 * Answers reflection requests from the descriptors compiled into gen/, so that
 * grpcurl and `buf curl` work without local .proto files. Both the v1 and the
 * v1alpha service are served; clients try v1 first.
 */
export class DescriptorIndex {
  readonly #files = new Map<string, DescFile>();
  readonly #registry;
  readonly #serviceNames: string[];

  constructor(services: readonly DescService[]) {
    for (const service of services) this.#addFile(service.file);
    this.#registry = createRegistry(...this.#files.values());
    this.#serviceNames = services.map((s) => s.typeName).sort();
  }

  #addFile(file: DescFile): void {
    if (this.#files.has(file.proto.name)) return;
    this.#files.set(file.proto.name, file);
    for (const dependency of file.dependencies) this.#addFile(dependency);
  }

  /** The response body for one request; `sent` holds the files this stream already has. */
  answer(request: ReflectionRequest, sent: Set<string>): ResponseBody {
    const { messageRequest } = request;
    switch (messageRequest.case) {
      case "listServices":
        return {
          case: "listServicesResponse",
          value: create(v1.ListServiceResponseSchema, { service: this.#serviceNames.map((name) => ({ name })) }),
        };
      case "fileByFilename":
        return this.#filesResponse(this.#files.get(messageRequest.value), messageRequest.value, sent);
      case "fileContainingSymbol":
        return this.#filesResponse(this.#fileOfSymbol(messageRequest.value), messageRequest.value, sent);
      case "fileContainingExtension":
      case "allExtensionNumbersOfType":
        // OpenExec's schemas declare no extensions.
        return notFound(`no extensions are declared for ${JSON.stringify(messageRequest.value)}`);
      default:
        throw new ConnectError("reflection request names no question", Code.InvalidArgument);
    }
  }

  #fileOfSymbol(symbol: string): DescFile | undefined {
    const direct = this.#registry.get(symbol);
    if (direct !== undefined) return direct.file;
    // Methods are not registry entries: "pkg.Service.Method" lives in its service's file.
    const dot = symbol.lastIndexOf(".");
    const service = this.#registry.getService(symbol.slice(0, dot));
    return service?.methods.some((m) => m.name === symbol.slice(dot + 1)) ? service.file : undefined;
  }

  #filesResponse(root: DescFile | undefined, asked: string, sent: Set<string>): ResponseBody {
    if (root === undefined) return notFound(`${JSON.stringify(asked)} is not known to this server`);
    const out: Uint8Array[] = [];
    // The requested file always; its transitive imports unless this stream already has them.
    const queue = [root];
    for (let file = queue.shift(); file !== undefined; file = queue.shift()) {
      if (file !== root && sent.has(file.proto.name)) continue;
      sent.add(file.proto.name);
      out.push(toBinary(FileDescriptorProtoSchema, file.proto));
      queue.push(...file.dependencies.filter((d) => !sent.has(d.proto.name)));
    }
    return {
      case: "fileDescriptorResponse",
      value: create(v1.FileDescriptorResponseSchema, { fileDescriptorProto: out }),
    };
  }
}

function notFound(message: string): ResponseBody {
  return {
    case: "errorResponse",
    value: create(v1.ErrorResponseSchema, { errorCode: Code.NotFound, errorMessage: message }),
  };
}

export function createReflectionServiceV1(index: DescriptorIndex): ServiceImpl<typeof v1.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const request of requests) {
        yield create(v1.ServerReflectionResponseSchema, {
          validHost: request.host,
          originalRequest: request,
          messageResponse: index.answer(request, sent),
        });
      }
    },
  };
}

export function createReflectionServiceV1alpha(index: DescriptorIndex): ServiceImpl<typeof v1alpha.ServerReflection> {
  return {
    async *serverReflectionInfo(requests) {
      const sent = new Set<string>();
      for await (const request of requests) {
        // The v1alpha messages differ from v1 only in their type names.
        const body = index.answer(request, sent) as unknown as v1alpha.ServerReflectionResponse["messageResponse"];
        yield create(v1alpha.ServerReflectionResponseSchema, {
          validHost: request.host,
          originalRequest: request,
          messageResponse: body,
        });
      }
    },
  };
}
