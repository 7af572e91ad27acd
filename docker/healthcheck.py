#!/usr/bin/python3
"""Container health check: grpc.health.v1.Health/Check against the local claa-server.

Exit 0 when the server answers SERVING, 1 otherwise (Docker's HEALTHCHECK convention). The
port comes from $CLAA_GRPC_PORT (default 50051), the whole-server service name "" is asked.
No generated stubs: HealthCheckRequest{service=""} encodes to zero bytes and the reply's
field 1 (ServingStatus) is a single varint, so python3-grpcio alone suffices.
"""
import os
import sys

SERVING = 1


def serving_status(reply):
    """Field 1 (varint) of a HealthCheckResponse; 0 (UNKNOWN) when absent or malformed."""
    pos = 0
    while pos < len(reply):
        key = reply[pos]
        pos += 1
        if key == 0x08 and pos < len(reply):  # field 1, wire type 0; statuses fit one byte
            return reply[pos]
        return 0
    return 0


def main():
    import grpc
    target = f"127.0.0.1:{os.environ.get('CLAA_GRPC_PORT', '50051')}"
    try:
        with grpc.insecure_channel(target) as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check")
            reply = check(b"", timeout=float(os.environ.get("CLAA_HEALTH_TIMEOUT", "3")))
    except grpc.RpcError as e:
        print(f"unhealthy: {target}: {e.code().name}: {e.details()}")
        return 1
    status = serving_status(reply)
    print("SERVING" if status == SERVING else f"not serving (status {status})")
    return 0 if status == SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
