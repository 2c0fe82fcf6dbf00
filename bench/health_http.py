"""How many ``GET /health`` requests a second the app's health port serves, measured by wrk.

The health port runs on its own threads inside ``python -m assistant`` (started as
``make up`` starts it, with a redis-server and a lite knowledge service on free ports).
Next to it, in the same run and with the same wrk settings, a hello-world ASGI app under
uvicorn (one worker, access log off, as the app's own server) gives the reference figure
for this machine. Both answer on 127.0.0.1 only; each wrk run is bounded in time.

Run from the repository root (needs ``wrk``: ``apt-get install wrk``)::

    .venv/bin/python bench/health_http.py            # about 40 s
    .venv/bin/python bench/health_http.py --seconds 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from processes import (
    free_port,
    http_ok,
    lite_services,
    nova_app,
    stop,
    wait_until,
)
from report import machine

THREADS = 2
CONNECTIONS = 50
HELLO_APP = """
import sys, uvicorn

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, world!"})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False)
"""


def wrk(url: str, seconds: int) -> tuple[float, str, str]:
    """Requests/s, mean latency and the error line (if any) of one wrk run against ``url``."""
    result = subprocess.run(
        ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    latency = re.search(r"Latency\s+(\S+)", result.stdout)
    errors = re.search(r"(Non-2xx.*|Socket errors.*)", result.stdout)
    if rate is None:
        raise RuntimeError(f"unexpected wrk output:\n{result.stdout}")
    return (
        float(rate.group(1)),
        latency.group(1) if latency else "?",
        errors.group(1) if errors else "none",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk run (default 10)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed, so there is nothing to measure: apt-get install -y wrk")
        return 0
    print(f"machine at start: {machine()}")
    print(f"wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds}s, each target warmed up for 2 s")
    results = {}
    with tempfile.TemporaryDirectory(prefix="nova-health-") as name:
        tmp = Path(name)
        with (
            lite_services(tmp) as (redis, rag),
            nova_app(tmp / "app", redis_url=redis.url, rag_url=rag.url) as app,
        ):
            url = app.extra["health_url"] + "/health"
            wrk(url, 2)
            results["Nova health port GET /health"] = wrk(url, args.seconds)
        port = free_port()
        hello = subprocess.Popen([sys.executable, "-c", HELLO_APP, str(port)])
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until(http_ok(url), "hello-world uvicorn", hello, tmp / "none.log")
            time.sleep(0.5)
            wrk(url, 2)
            results["hello-world ASGI app, uvicorn"] = wrk(url, args.seconds)
        finally:
            stop(hello)
    print()
    print(f"{'target':<36}{'requests/s':>12}{'mean latency':>14}  errors")
    print("-" * 72)
    for label, (rate, latency, errors) in results.items():
        print(f"{label:<36}{rate:>12,.0f}{latency:>14}  {errors}")
    ours, hello_rate = (rate for rate, _, _ in results.values())
    print(f"health port / hello world: {ours / hello_rate:.2f}x")
    print(f"machine at end: {machine()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
