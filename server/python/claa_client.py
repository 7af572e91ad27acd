#!/usr/bin/python3
"""A small Python client for claa-server (library + command line).

    /usr/bin/python3 server/python/claa_client.py --target 127.0.0.1:50051 \
        generate "Once upon a time" --max_tokens 20
    /usr/bin/python3 server/python/claa_client.py abort REQUEST_ID
    /usr/bin/python3 server/python/claa_client.py health
    /usr/bin/python3 server/python/claa_client.py info
    /usr/bin/python3 server/python/claa_client.py --tls_ca_file ca.pem \
        --auth_token_file token health        # a server with TLS and a bearer token

Stubs: the claa.v1 Python stubs are generated at run time from proto/claa/v1/claa.proto with
protoc and /usr/bin/grpc_python_plugin into a cache directory keyed by the proto's SHA-256, so
the client always matches the checked-out API and nothing generated is committed. Health uses
no stubs at all: '/grpc.health.v1.Health/Check' is called through a generic unary-unary method
with the two tiny messages encoded by hand (see _encode_health_request), which spares a second
.proto file for a fixed, four-value API.

Exit codes: 0 success; 1 a negative answer (abort: no such request; health: not SERVING);
2 an RPC or usage failure (the gRPC code and message go to stderr).
"""
import argparse
import hashlib
import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

DEFAULT_TARGET = "127.0.0.1:50051"
GRPC_PYTHON_PLUGIN = "/usr/bin/grpc_python_plugin"
_HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_PROTO_ROOT = os.path.normpath(os.path.join(_HERE, "..", "..", "proto"))
PROTO_FILE = "claa/v1/claa.proto"

HEALTH_STATUS_NAMES = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def default_cache_dir():
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "claa_client")


def load_stubs(proto_root=None, cache_dir=None):
    """Returns (claa_pb2, claa_pb2_grpc), generating them into the cache when missing."""
    proto_root = proto_root or os.environ.get("CLAA_PROTO_ROOT") or DEFAULT_PROTO_ROOT
    cache_dir = cache_dir or os.environ.get("CLAA_CLIENT_CACHE") or default_cache_dir()
    proto_path = os.path.join(proto_root, PROTO_FILE)
    with open(proto_path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out_dir = os.path.join(cache_dir, digest)
    if not os.path.exists(os.path.join(out_dir, "claa", "v1", "claa_pb2_grpc.py")):
        os.makedirs(cache_dir, exist_ok=True)
        # Generate into a private directory and rename it into place, so that concurrent
        # clients never import a half-written stub.
        tmp_dir = tempfile.mkdtemp(prefix="gen-", dir=cache_dir)
        try:
            subprocess.run(
                ["protoc", f"--proto_path={proto_root}", f"--python_out={tmp_dir}",
                 f"--grpc_python_out={tmp_dir}",
                 f"--plugin=protoc-gen-grpc_python={GRPC_PYTHON_PLUGIN}", PROTO_FILE],
                check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            os.rename(tmp_dir, out_dir)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"protoc failed on {proto_path}: {e.stderr.strip()}") from e
        except OSError:
            if not os.path.isdir(out_dir):  # not merely another process winning the race
                raise
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)
    return (importlib.import_module("claa.v1.claa_pb2"),
            importlib.import_module("claa.v1.claa_pb2_grpc"))


def _encode_health_request(service):
    """grpc.health.v1.HealthCheckRequest {string service = 1;} in protobuf wire format."""
    data = service.encode("utf-8")
    if not data:
        return b""
    out = bytearray(b"\x0a")  # field 1, wire type 2 (length-delimited)
    n = len(data)
    while True:  # varint length
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes(out) + data


def _decode_health_status(data):
    """Reads field 1 (ServingStatus, a varint) of a HealthCheckResponse; 0 when absent."""
    pos, status = 0, 0
    while pos < len(data):
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == 0:
            value, pos = _read_varint(data, pos)
            if field == 1:
                status = value
        elif wire_type == 2:
            length, pos = _read_varint(data, pos)
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type} in HealthCheckResponse")
    return status


def _read_varint(data, pos):
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint in HealthCheckResponse")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


class ClaaClient:
    """Thin wrapper over the claa.v1.Generation stub plus health."""

    def __init__(self, target=DEFAULT_TARGET, proto_root=None, cache_dir=None, tls=False,
                 tls_ca_file=None, tls_cert_file=None, tls_key_file=None, tls_server_name=None,
                 auth_token=None):
        """TLS when `tls` or `tls_ca_file` is set (no CA file: the system's roots);
        tls_cert_file/tls_key_file add a client certificate; auth_token is sent with every
        call as 'authorization: Bearer <token>' (servers started with --auth_token_file)."""
        import grpc  # imported here so that --help works without grpcio
        self.grpc = grpc
        self.pb2, pb2_grpc = load_stubs(proto_root, cache_dir)
        self._metadata = [("authorization", f"Bearer {auth_token}")] if auth_token else None
        if tls or tls_ca_file:
            def read(path):
                with open(path, "rb") as f:
                    return f.read()
            if bool(tls_cert_file) != bool(tls_key_file):
                raise ValueError("tls_cert_file and tls_key_file go together")
            creds = grpc.ssl_channel_credentials(
                root_certificates=read(tls_ca_file) if tls_ca_file else None,
                private_key=read(tls_key_file) if tls_key_file else None,
                certificate_chain=read(tls_cert_file) if tls_cert_file else None)
            options = [("grpc.ssl_target_name_override", tls_server_name)] \
                if tls_server_name else []
            self.channel = grpc.secure_channel(target, creds, options=options)
        else:
            if tls_cert_file or tls_key_file or tls_server_name:
                raise ValueError("tls_cert_file, tls_key_file and tls_server_name need TLS: "
                                 "set tls_ca_file (or tls=True)")
            self.channel = grpc.insecure_channel(target)
        self.stub = pb2_grpc.GenerationStub(self.channel)
        # No serializers: the call takes and returns raw bytes.
        self._health_check = self.channel.unary_unary("/grpc.health.v1.Health/Check")

    def close(self):
        self.channel.close()

    def generate(self, prompt=None, token_ids=None, max_tokens=None, temperature=None,
                 top_p=None, top_k=None, seed=None, stop=(), ignore_eos=False, request_id="",
                 timeout=None):
        """Yields GenerateResponse messages (chunks, then one complete). Raises grpc.RpcError."""
        pb2 = self.pb2
        sampling = pb2.SamplingParams(stop=list(stop), ignore_eos=ignore_eos)
        for name, value in (("max_tokens", max_tokens), ("temperature", temperature),
                            ("top_p", top_p), ("top_k", top_k), ("seed", seed)):
            if value is not None:
                setattr(sampling, name, value)
        request = pb2.GenerateRequest(request_id=request_id, sampling=sampling)
        if token_ids is not None:
            request.token_ids.ids.extend(token_ids)
        else:
            request.text = prompt
        return self.stub.Generate(request, timeout=timeout, metadata=self._metadata)

    def abort(self, request_id, timeout=10):
        """True when the server found the request (its stream then ends with ABORT)."""
        reply = self.stub.Abort(self.pb2.AbortRequest(request_id=request_id), timeout=timeout,
                                metadata=self._metadata)
        return reply.found

    def health(self, service="", timeout=10):
        """The serving status name: SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN."""
        data = self._health_check(_encode_health_request(service), timeout=timeout,
                                  metadata=self._metadata)
        status = _decode_health_status(data)
        return HEALTH_STATUS_NAMES.get(status, f"UNKNOWN({status})")

    def model_info(self, timeout=10):
        return self.stub.GetModelInfo(self.pb2.GetModelInfoRequest(), timeout=timeout,
                                      metadata=self._metadata)


def _cmd_generate(client, args):
    pb2 = client.pb2
    token_ids = None
    if args.token_ids:
        try:
            token_ids = [int(t) for t in args.token_ids.split(",") if t.strip()]
        except ValueError:
            raise SystemExit(f"claa_client: --token_ids: not a comma-separated id list: "
                             f"{args.token_ids!r}")
    elif args.prompt is None:
        raise SystemExit("claa_client: generate needs PROMPT or --token_ids")
    request_id = args.request_id or f"py-{uuid.uuid4().hex[:12]}"
    # Printed first, so that another terminal can `abort` this request.
    print(f"request_id: {request_id}", file=sys.stderr, flush=True)
    ids, text, complete = [], "", None
    for response in client.generate(prompt=args.prompt, token_ids=token_ids,
                                    max_tokens=args.max_tokens, temperature=args.temperature,
                                    top_p=args.top_p, top_k=args.top_k, seed=args.seed,
                                    stop=args.stop or (), ignore_eos=args.ignore_eos,
                                    request_id=request_id, timeout=args.timeout):
        if response.HasField("chunk"):
            ids.extend(response.chunk.token_ids)
            text += response.chunk.text
            if not args.json:
                sys.stdout.write(response.chunk.text)
                sys.stdout.flush()
        elif response.HasField("complete"):
            complete = response.complete
    finish = pb2.FinishReason.Name(complete.finish_reason) if complete else "NONE"
    if args.json:
        out = {"request_id": request_id, "text": text, "token_ids": ids, "finish_reason": finish}
        if complete is not None:
            out["usage"] = {"prompt_tokens": complete.usage.prompt_tokens,
                            "completion_tokens": complete.usage.completion_tokens,
                            "kept_prompt_tokens": complete.usage.kept_prompt_tokens}
            out["timing"] = {"queue_seconds": complete.timing.queue_seconds,
                             "ttft_seconds": complete.timing.ttft_seconds,
                             "e2e_seconds": complete.timing.e2e_seconds}
        print(json.dumps(out, ensure_ascii=False))
    else:
        print()
        if complete is not None:
            print(f"finish_reason={finish} prompt_tokens={complete.usage.prompt_tokens} "
                  f"completion_tokens={complete.usage.completion_tokens} "
                  f"ttft={complete.timing.ttft_seconds:.3f}s "
                  f"e2e={complete.timing.e2e_seconds:.3f}s", file=sys.stderr)
    return 0


def _cmd_abort(client, args):
    if client.abort(args.request_id, timeout=args.timeout):
        print(f"aborted {args.request_id}")
        return 0
    print(f"not found: no running or queued request '{args.request_id}'")
    return 1


def _cmd_health(client, args):
    status = client.health(args.service, timeout=args.timeout)
    print(status)
    return 0 if status == "SERVING" else 1


def _cmd_info(client, args):
    from google.protobuf import json_format
    info = client.model_info(timeout=args.timeout)
    print(json_format.MessageToJson(info, preserving_proto_field_name=True,
                                    including_default_value_fields=True))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="claa_client.py", description="Command-line client for claa-server.",
        epilog="Exit codes: 0 ok; 1 abort found no request / health not SERVING; "
               "2 RPC failure.")
    parser.add_argument("--target", default=os.environ.get("CLAA_TARGET", DEFAULT_TARGET),
                        help="server HOST:PORT (default: $CLAA_TARGET or %(default)s)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="per-call deadline in seconds (default: 300 for generate, "
                             "10 otherwise)")
    parser.add_argument("--proto_root", default=None,
                        help="directory holding claa/v1/claa.proto (default: the repo's proto/)")
    parser.add_argument("--cache_dir", default=None,
                        help="where generated stubs are cached (default: ~/.cache/claa_client)")
    parser.add_argument("--tls", action="store_true",
                        help="connect with TLS, trusting the system's root certificates")
    parser.add_argument("--tls_ca_file", default=None,
                        help="connect with TLS; the server's certificate must chain to this "
                             "PEM CA")
    parser.add_argument("--tls_cert_file", default=None,
                        help="PEM client certificate (with --tls_key_file), for servers that "
                             "require one")
    parser.add_argument("--tls_key_file", default=None, help="PEM key of --tls_cert_file")
    parser.add_argument("--tls_server_name", default=None,
                        help="name the server's certificate must carry, if not --target's host")
    parser.add_argument("--auth_token_file", default=None,
                        help="file holding the server's bearer token (whitespace trimmed); "
                             "default: $CLAA_AUTH_TOKEN if set")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="stream a generation")
    gen.add_argument("prompt", nargs="?", help="prompt text (tokenized by the server)")
    gen.add_argument("--token_ids", help="prompt as comma-separated token ids instead of text")
    gen.add_argument("--max_tokens", type=int, default=None)
    gen.add_argument("--temperature", type=float, default=None, help="0 = greedy")
    gen.add_argument("--top_p", type=float, default=None)
    gen.add_argument("--top_k", type=int, default=None)
    gen.add_argument("--seed", type=int, default=None)
    gen.add_argument("--stop", action="append", help="stop string (repeatable)")
    gen.add_argument("--ignore_eos", action="store_true")
    gen.add_argument("--request_id", default="",
                     help="request id to abort it by (default: a random py-... id)")
    gen.add_argument("--json", action="store_true",
                     help="print one JSON object at the end instead of streaming text")

    ab = sub.add_parser("abort", help="abort a running or queued request")
    ab.add_argument("request_id")
    hl = sub.add_parser("health", help="grpc.health.v1 check")
    hl.add_argument("--service", default="", help="service name (default: the whole server)")
    sub.add_parser("info", help="print the served model's description as JSON")

    args = parser.parse_args(argv)
    if args.timeout is None:
        args.timeout = 300.0 if args.command == "generate" else 10.0
    token = os.environ.get("CLAA_AUTH_TOKEN") or None
    if args.auth_token_file:
        try:
            with open(args.auth_token_file) as f:
                token = f.read().strip()
        except OSError as e:
            raise SystemExit(f"claa_client: --auth_token_file: {e}")
        if not token:
            raise SystemExit(f"claa_client: --auth_token_file {args.auth_token_file}: is empty")
    try:
        client = ClaaClient(args.target, args.proto_root, args.cache_dir, tls=args.tls,
                            tls_ca_file=args.tls_ca_file, tls_cert_file=args.tls_cert_file,
                            tls_key_file=args.tls_key_file, tls_server_name=args.tls_server_name,
                            auth_token=token)
    except (OSError, ValueError) as e:
        raise SystemExit(f"claa_client: {e}")
    commands = {"generate": _cmd_generate, "abort": _cmd_abort, "health": _cmd_health,
                "info": _cmd_info}
    try:
        return commands[args.command](client, args)
    except client.grpc.RpcError as e:
        print(f"claa_client: {args.command} failed: {e.code().name}: {e.details()}",
              file=sys.stderr)
        return 2
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
