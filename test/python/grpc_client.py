"""A Python gRPC client of OpenExec, as a Python user writes one (docs/API.md#python).

Usage: grpc_client.py STUBS_DIR HOST:PORT

STUBS_DIR holds the stubs `python3 -m grpc_tools.protoc` generated from proto/:
openexec/v1/*_pb2.py, and grpc_health/v1/ and grpc_reflection/v1alpha/ laid
out as the grpcio-health-checking and grpcio-reflection packages are (the
proto packages stay grpc.health.v1 and grpc.reflection.v1alpha on the wire;
only the Python module path differs, so that it does not shadow grpcio's own
`grpc` package). Calls the server over gRPC (h2c) and prints what it observed
as one JSON object; the TypeScript test (test/python-grpc-client.spec.ts)
checks it.
"""

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc  # noqa: E402  (grpcio: must still be grpcio's package after the stubs are on the path)
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format  # noqa: E402
from google.protobuf import message_factory  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc  # noqa: E402
from openexec.v1 import error_pb2, execution_pb2, execution_pb2_grpc, receipt_pb2  # noqa: E402


def rpc_status_class():
    """google.rpc.Status, the message grpc-status-details-bin carries.

    With pip, `grpcio-status` does this: rpc_status.from_call(error). Debian has
    no package for it, so the three-field message is declared here.
    """
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName("google.rpc.Status")
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto(
            name="google/rpc/status.proto",
            package="google.rpc",
            syntax="proto3",
            dependency=[any_pb2.DESCRIPTOR.name],
        )
        message = proto.message_type.add(name="Status")
        field = descriptor_pb2.FieldDescriptorProto
        message.field.add(name="code", number=1, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL)
        message.field.add(name="message", number=2, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
        message.field.add(
            name="details",
            number=3,
            type=field.TYPE_MESSAGE,
            label=field.LABEL_REPEATED,
            type_name=".google.protobuf.Any",
        )
        pool.Add(proto)
        descriptor = pool.FindMessageTypeByName("google.rpc.Status")
    if hasattr(message_factory, "GetMessageClass"):
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def execute(stub, action, payload, nonce):
    request = execution_pb2.ExecuteRequest(action=action, nonce=nonce)
    request.payload.update(payload)
    return stub.Execute(request, timeout=10)


def answer(response):
    return {
        "id": response.id,
        "action": response.action,
        "status": receipt_pb2.ExecutionStatus.Name(response.status),
        "result": json_format.MessageToDict(response.result),
        "approved": response.approved,
        "replayed": response.replayed,
        "receipt": response.receipt,
        "signatures": len(response.signed_receipt.signatures),
    }


def refusal(error):
    """What a grpc.RpcError carries: code, the openexec-reason trailer and the decoded ErrorDetail."""
    trailers = dict(error.trailing_metadata() or ())
    details = []
    status_bytes = trailers.get("grpc-status-details-bin")
    if status_bytes is not None:
        status = rpc_status_class().FromString(status_bytes)
        for any_detail in status.details:
            detail = error_pb2.ErrorDetail()
            if any_detail.Unpack(detail):
                details.append({"type": any_detail.type_url, "reason": detail.reason, "status_code": status.code})
            else:
                details.append({"type": any_detail.type_url})
    return {
        "code": error.code().name,
        "message": error.details(),
        "reason_trailer": trailers.get("openexec-reason"),
        "details": details,
    }


def main():
    target = sys.argv[2]
    seen = {"grpc_module": grpc.__file__}
    # grpcio speaks HTTP/2 with prior knowledge on an insecure channel: h2c, as the server expects.
    with grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0)]) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        executions = execution_pb2_grpc.ExecutionServiceStub(channel)

        first = execute(executions, "echo", {"msg": "hello from python"}, "py-1")
        seen["echo"] = answer(first)
        seen["counter"] = [
            answer(execute(executions, "counter.add", {"key": "py", "delta": 2}, "py-c1")),
            answer(execute(executions, "counter.add", {"key": "py", "delta": 3}, "py-c2")),
        ]
        seen["replay"] = answer(execute(executions, "echo", {"msg": "hello from python"}, "py-1"))
        try:
            execute(executions, "echo", {"msg": "another payload"}, "py-1")
            seen["reuse"] = {"code": "OK"}
        except grpc.RpcError as error:
            seen["reuse"] = refusal(error)

        verify = execution_pb2.VerifyReceiptRequest(exec_id=first.id, receipt=first.receipt)
        verify.result.CopyFrom(first.result)
        seen["verify"] = executions.VerifyReceipt(verify, timeout=10).valid
        tampered = execution_pb2.VerifyReceiptRequest(exec_id=first.id, receipt=first.receipt)
        tampered.result.struct_value.update({"echo": {"msg": "tampered"}})
        seen["verify_tampered"] = executions.VerifyReceipt(tampered, timeout=10).valid

        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        seen["health_check"] = health_pb2.HealthCheckResponse.ServingStatus.Name(check.status)
        watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        first_status = next(watch)
        watch.cancel()
        seen["health_watch_first"] = health_pb2.HealthCheckResponse.ServingStatus.Name(first_status.status)
        try:
            health.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
            seen["health_unknown"] = "OK"
        except grpc.RpcError as error:
            seen["health_unknown"] = error.code().name

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        services = []
        for response in responses:
            services.extend(service.name for service in response.list_services_response.service)
        seen["reflection_services"] = sorted(services)
    print(json.dumps(seen))


if __name__ == "__main__":
    main()
