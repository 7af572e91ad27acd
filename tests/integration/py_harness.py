"""Shared pieces of the Python integration tests: start a real claa-server, count checks."""
import subprocess
import time


def start_server(binary, extra_args=()):
    """Starts claa-server on a free port (metrics off); returns (process, 'host:port')."""
    proc = subprocess.Popen([binary, "--port=0", "--metrics_port=-1", *extra_args],
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 60
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
