"""Shared pieces of the Python integration tests: start a real claa-server, count checks,
scale waits."""
import math
import os
import subprocess
import time


def timeout_scale():
    """CLAA_TEST_TIMEOUT_SCALE (default 1), as tests/integration/timeout_scale.h reads it for the
    C++ tests: sanitized servers run several times slower, so every wait is multiplied by it.
    Values below 1 or not numbers count as 1."""
    try:
        scale = float(os.environ.get("CLAA_TEST_TIMEOUT_SCALE") or 1)
    except ValueError:
        return 1.0
    return scale if math.isfinite(scale) and scale >= 1 else 1.0


def scaled(seconds):
    """A wait or deadline sized for a release build, in seconds, times timeout_scale()."""
    return seconds * timeout_scale()


def start_server(binary, extra_args=()):
    """Starts claa-server on a free port (metrics off); returns (process, 'host:port')."""
    proc = subprocess.Popen([binary, "--port=0", "--metrics_port=-1", *extra_args],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + scaled(60)
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if "listening on " in line:
            return proc, line.strip().split("listening on ")[1]
    proc.kill()
    raise RuntimeError("claa-server did not start")


class Checks:
    """Counts named checks and prints the 'N passed, N failed' line CI reads."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, name, cond, detail=""):
        if cond:
            self.passed += 1
            print(f"[ PASS ] {name}", flush=True)
        else:
            self.failed += 1
            print(f"[ FAIL ] {name} {detail}", flush=True)

    def summary(self):
        print(f"{self.passed} passed, {self.failed} failed")
        return 0 if self.failed == 0 else 1
