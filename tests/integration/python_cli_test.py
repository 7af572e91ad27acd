#!/usr/bin/python3
"""Drives server/python/claa_client.py's command line against a real claa-server.

Starts the built-in-model server on a free port, then runs the CLI as users would: health,
info, generate (JSON and streamed text), a refused request, abort of an unknown id and of a
running generation. Prints 'N passed, N failed' last; exits non-zero on any failure.
"""
import argparse
import json
import subprocess
import sys
import time

from py_harness import Checks, scaled, start_server




def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--client", required=True, help="path of claa_client.py")
    parser.add_argument("--cache_dir", required=True, help="stub cache for the client")
    args = parser.parse_args()

    check = Checks()

    proc, address = start_server(args.server)
    base = [sys.executable, args.client, "--target", address, "--cache_dir", args.cache_dir]

    def cli(*cli_args, timeout=60):
        return subprocess.run(base + list(cli_args), capture_output=True, text=True,
                              timeout=scaled(timeout))

    try:
        r = cli("health")
        check("health prints SERVING", r.returncode == 0 and r.stdout.strip() == "SERVING",
              f"rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")
        r = cli("health", "--service", "no.such.Service")
        check("health of an unknown service fails", r.returncode != 0,
              f"rc={r.returncode} out={r.stdout!r}")

        r = cli("info")
        try:
            info = json.loads(r.stdout)
        except ValueError:
            info = {}
        check("info prints the model as JSON",
              r.returncode == 0 and info.get("builtin") is True and info.get("num_layers") == 4,
              f"rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")

        r = cli("generate", "Once upon a time", "--max_tokens", "8", "--temperature", "0",
                "--ignore_eos", "--json")
        try:
            out = json.loads(r.stdout)
        except ValueError:
            out = {}
        check("generate --json returns 8 tokens ending LENGTH",
              r.returncode == 0 and len(out.get("token_ids", [])) == 8
              and out.get("finish_reason") == "LENGTH"
              and out.get("usage", {}).get("completion_tokens") == 8,
              f"rc={r.returncode} out={r.stdout!r} err={r.stderr!r}")

        r = cli("generate", "Once upon a time", "--max_tokens", "5", "--ignore_eos")
        check("generate streams text and reports the finish on stderr",
              r.returncode == 0 and "request_id: py-" in r.stderr
              and "finish_reason=LENGTH" in r.stderr and "completion_tokens=5" in r.stderr,
              f"rc={r.returncode} err={r.stderr!r}")

        r = cli("generate", "--token_ids", "1,2,3", "--top_p", "2")
        check("a bad request exits 2 naming the field",
              r.returncode == 2 and "INVALID_ARGUMENT" in r.stderr
              and "sampling.top_p" in r.stderr, f"rc={r.returncode} err={r.stderr!r}")

        r = cli("abort", "no-such-request")
        check("abort of an unknown id exits 1", r.returncode == 1 and "not found" in r.stdout,
              f"rc={r.returncode} out={r.stdout!r}")

        # Abort a long generation from a second CLI process, as a user in another terminal.
        long_gen = subprocess.Popen(
            base + ["generate", "--token_ids", "1,40,41", "--max_tokens", "1900",
                    "--temperature", "0", "--ignore_eos", "--request_id", "py-cli-abort",
                    "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        aborted = None
        deadline = time.time() + scaled(30)
        while time.time() < deadline and long_gen.poll() is None:
            aborted = cli("abort", "py-cli-abort")
            if aborted.returncode == 0:
                break
            time.sleep(0.05)  # not submitted yet: the client is still starting
        check("abort finds the running request",
              aborted is not None and aborted.returncode == 0
              and "aborted py-cli-abort" in aborted.stdout,
              "" if aborted is None else f"rc={aborted.returncode} out={aborted.stdout!r}")
        try:
            gen_out, gen_err = long_gen.communicate(timeout=scaled(60))
        except subprocess.TimeoutExpired:
            long_gen.kill()
            gen_out, gen_err = long_gen.communicate()
        try:
            out = json.loads(gen_out)
        except ValueError:
            out = {}
        check("the aborted generation ends with ABORT",
              long_gen.returncode == 0 and out.get("finish_reason") == "ABORT"
              and len(out.get("token_ids", [])) < 1900,
              f"rc={long_gen.returncode} out={gen_out[:200]!r} err={gen_err!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(15))
        except subprocess.TimeoutExpired:
            proc.kill()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
