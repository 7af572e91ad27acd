#!/usr/bin/python3
"""Drives a real claa-server with a Python grpcio client (Debian python3-grpcio).

Generates Python stubs from proto/claa/v1/claa.proto and the health proto with protoc and
grpc_python_plugin, starts the built-in-model server on free loopback ports, then checks
streaming, Abort, health, model info and a bad request. Prints 'N passed, N failed'.
"""
import argparse
import os
import subprocess
import sys

from py_harness import Checks, scaled, start_server


def generate_stubs(proto_root, health_dir, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    plugin = "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"
    subprocess.run(["protoc", f"--proto_path={proto_root}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", plugin, "claa/v1/claa.proto"], check=True)
    subprocess.run(["protoc", f"--proto_path={health_dir}", f"--python_out={out_dir}",
                    f"--grpc_python_out={out_dir}", plugin, "health.proto"], check=True)
    sys.path.insert(0, out_dir)




def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--proto_root", required=True)
    parser.add_argument("--health_proto_dir", required=True)
    parser.add_argument("--work_dir", required=True)
    args = parser.parse_args()
    generate_stubs(args.proto_root, args.health_proto_dir, args.work_dir)
    import grpc
    from claa.v1 import claa_pb2, claa_pb2_grpc
    import health_pb2, health_pb2_grpc

    proc, address = start_server(args.server)
    check = Checks()

    try:
        channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(channel).result(timeout=scaled(30))
        stub = claa_pb2_grpc.GenerationStub(channel)

        # Streaming generation.
        req = claa_pb2.GenerateRequest(
            text="Hello from Python",
            sampling=claa_pb2.SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True))
        ids, text, complete = [], "", None
        for resp in stub.Generate(req, timeout=scaled(60)):
            if resp.HasField("chunk"):
                ids.extend(resp.chunk.token_ids)
                text += resp.chunk.text
            elif resp.HasField("complete"):
                complete = resp.complete
        check("stream yields 10 tokens", len(ids) == 10, str(ids))
        check("stream ends with LENGTH",
              complete is not None and complete.finish_reason == claa_pb2.LENGTH)
        check("usage counts tokens", complete is not None and complete.usage.completion_tokens == 10)

        # Abort mid-stream.
        req = claa_pb2.GenerateRequest(
            request_id="py-abort", token_ids=claa_pb2.TokenIds(ids=[1, 40, 41]),
            sampling=claa_pb2.SamplingParams(temperature=0.0, max_tokens=2000, ignore_eos=True))
        stream = stub.Generate(req, timeout=scaled(120))
        first = next(stream)
        check("first message is a chunk", first.HasField("chunk"))
        aborted = stub.Abort(claa_pb2.AbortRequest(request_id="py-abort"), timeout=scaled(10))
        check("abort finds the request", aborted.found)
        final = None
        for resp in stream:
            if resp.HasField("complete"):
                final = resp.complete
        check("aborted stream ends with ABORT",
              final is not None and final.finish_reason == claa_pb2.ABORT)

        # Health.
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(), timeout=scaled(10)).status
        check("health is SERVING", status == health_pb2.HealthCheckResponse.SERVING)

        # Model info.
        info = stub.GetModelInfo(claa_pb2.GetModelInfoRequest(), timeout=scaled(10))
        check("model info", info.builtin and info.num_layers == 4, str(info))

        # Bad request: INVALID_ARGUMENT naming the field.
        bad = claa_pb2.GenerateRequest(
            token_ids=claa_pb2.TokenIds(ids=[1, 2]),
            sampling=claa_pb2.SamplingParams(top_p=2.0))
        try:
            list(stub.Generate(bad, timeout=scaled(10)))
            check("bad top_p is refused", False, "no error")
        except grpc.RpcError as e:
            check("bad top_p is refused",
                  e.code() == grpc.StatusCode.INVALID_ARGUMENT and "sampling.top_p" in e.details(),
                  f"{e.code()} {e.details()}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(15))
        except subprocess.TimeoutExpired:
            proc.kill()
    check("server exits cleanly on SIGTERM", proc.returncode == 0, f"rc={proc.returncode}")
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
