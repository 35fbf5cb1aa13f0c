"""Soak: a real ``tierroute serve`` on loopback under mixed load, then the books balanced.

    python bench/soak.py [--bundle DIR] [--clients 24] [--seconds 60] [--bad-share 0.05]
                         [--reload-every 2] [--partial 500] [--request-timeout 10]

Without --bundle, a small bundle is trained first (``tierroute train`` on 400 synthetic requests,
no encoder, tracking off) in a temporary folder. Then, for ``--seconds``:

* ``--clients`` keep-alive clients POST /v1/route back to back; ``--bad-share`` of their requests
  are malformed on purpose (not JSON, nested 10,000 deep, a 5,000-digit number, a lone surrogate
  in the id, a NaN token, an unknown field, an SLA of 3.5e38, a wrong method or path);
* ``/admin/reload`` (empty body: the configured bundle) every ``--reload-every`` seconds;
* ``--partial`` connections that send half a request head and never finish it, each reopened when
  the server closes it (after its ``--request-timeout``).

It prints requests/s, p50/p99 latency of the well-formed requests, answers by status class (good
and bad apart), connection errors, reloads, the partial connections closed by the server, the
server's RSS before and after (``/proc/PID/status``), tracebacks in the server's log, and the
reconciliation: decision-log lines and ``tierroute_decisions_total`` against the 200s. It ends with
PASS or FAIL against: no 5xx, no connection error for a well-formed client, every bad request a
4xx, the decision log and the metrics equal to the 200s, RSS growth under 10%. Exit 0 on PASS.

Every loop is bounded by the deadline (and the whole run by ``--seconds`` + 120 s); everything is
on 127.0.0.1. The soft open-file limit is raised for the partial connections when the hard limit
allows; otherwise ``--partial`` is scaled down to fit, and the report says so.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

GOOD = [
    {"prompt": "Summarize this ticket."},
    {"prompt": "Pull the order id from: order #88231 shipped late.", "output_schema": {"order_id": "string"}},
    {"prompt": "Step by step, analyze and compare the two carrier reports.", "latency_sla_ms": 150},
    {
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Classify: billing or tech?"}],
        "output_schema": ["billing", "technical"],
    },
]
# (name, method, path, raw body): each must be answered 4xx
BAD = [
    ("not_json", "POST", "/v1/route", b"{not json"),
    ("deep", "POST", "/v1/route", b'{"prompt": "x", "metadata": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"),
    ("huge_number", "POST", "/v1/route", b'{"prompt": "x", "latency_sla_ms": ' + b"9" * 5000 + b"}"),
    ("surrogate_id", "POST", "/v1/route", b'{"id": "a\\ud800", "prompt": "x"}'),
    ("nan", "POST", "/v1/route", b'{"prompt": "x", "latency_sla_ms": NaN}'),
    ("unknown_field", "POST", "/v1/route", b'{"prompt": "x", "temperature": 0}'),
    ("sla_overflow", "POST", "/v1/route", b'{"prompt": "x", "latency_sla_ms": 3.5e38}'),
    ("wrong_method", "GET", "/v1/route", b""),
    ("wrong_path", "POST", "/v2/route", b"{}"),
]
PARTIAL_HEAD = b"POST /v1/route HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: appl"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    return int(re.search(r"^VmRSS:\s+(\d+) kB", text, re.M).group(1))  # type: ignore[union-attr]


def _fit_open_files(partial: int, clients: int) -> tuple[int, str | None]:
    """(partial connections to open, a note when scaled down): raise the soft limit if need be."""
    need = partial + clients + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft == resource.RLIM_INFINITY or soft >= need:
        return partial, None
    fits = max(0, soft - clients - 256)
    return fits, f"ulimit -n allows {soft}: --partial scaled down from {partial} to {fits}"


def train_bundle(folder: Path) -> Path:
    print(f"training a small bundle in {folder} ...", flush=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierroute.cli",
            "train",
            "--synthetic-requests",
            "400",
            "--encoder",
            "none",
            "--kind",
            "pooled",
            "--tracking-uri",
            "",
            "--out",
            str(folder / "run"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"training failed ({out.returncode}): {out.stderr[-2000:]}")
    return Path(json.loads(out.stdout)["bundle"])


class Tally:
    """What the load saw (one event loop: no locks needed)."""

    def __init__(self) -> None:
        self.good: Counter[int] = Counter()
        self.bad: Counter[int] = Counter()
        self.bad_misanswered: Counter[str] = Counter()  # bad kinds answered other than 4xx
        self.latency: list[float] = []
        self.good_conn_errors: Counter[str] = Counter()
        self.bad_conn_errors: Counter[str] = Counter()
        self.reloads: Counter[int] = Counter()
        self.reload_errors: Counter[str] = Counter()
        self.partial_opened = 0
        self.partial_closed_by_server = 0
        self.partial_408 = 0
        self.partial_connect_errors: Counter[str] = Counter()


async def client_loop(base: str, deadline: float, bad_share: float, seed: int, tally: Tally) -> None:
    import httpx

    rng = random.Random(seed)
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        while time.monotonic() < deadline:
            if rng.random() < bad_share:
                name, method, path, body = rng.choice(BAD)
                try:
                    response = await client.request(method, path, content=body, headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    tally.bad_conn_errors[type(exc).__name__] += 1
                    continue
                tally.bad[response.status_code] += 1
                if not 400 <= response.status_code < 500:
                    tally.bad_misanswered[f"{name}->{response.status_code}"] += 1
                continue
            payload = {**rng.choice(GOOD), "id": f"c{seed}-{rng.randrange(1 << 30)}"}
            started = time.perf_counter()
            try:
                response = await client.post("/v1/route", json=payload)
            except httpx.HTTPError as exc:
                tally.good_conn_errors[type(exc).__name__] += 1
                continue
            tally.latency.append(time.perf_counter() - started)
            tally.good[response.status_code] += 1


async def reload_loop(base: str, deadline: float, every: float, tally: Tally) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() + every < deadline:
            await asyncio.sleep(every)
            try:
                tally.reloads[(await client.post("/admin/reload")).status_code] += 1
            except httpx.HTTPError as exc:
                tally.reload_errors[type(exc).__name__] += 1


async def partial_loop(port: int, deadline: float, tally: Tally) -> None:
    """One never-finished request at a time: open, send half a head, wait for the server to close."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=10)
        except (OSError, asyncio.TimeoutError) as exc:
            tally.partial_connect_errors[type(exc).__name__] += 1
            await asyncio.sleep(0.5)
            continue
        tally.partial_opened += 1
        try:
            writer.write(PARTIAL_HEAD)
            await writer.drain()
            left = deadline - time.monotonic()
            data = await asyncio.wait_for(reader.read(), timeout=max(0.01, left))  # until the server closes
            tally.partial_closed_by_server += 1
            tally.partial_408 += data.startswith(b"HTTP/1.1 408 ")
        except (OSError, asyncio.TimeoutError):
            pass  # the run ended first (or the server reset it)
        finally:
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), timeout=5)
            except (OSError, asyncio.TimeoutError):
                pass


async def load(base: str, port: int, args: argparse.Namespace, partial: int, tally: Tally) -> float:
    started = time.monotonic()
    deadline = started + args.seconds
    tasks = [asyncio.create_task(partial_loop(port, deadline, tally)) for _ in range(partial)]
    await asyncio.sleep(min(2.0, args.seconds / 10))  # the partial connections open first
    tasks += [asyncio.create_task(client_loop(base, deadline, args.bad_share, args.seed + k, tally)) for k in range(args.clients)]
    tasks.append(asyncio.create_task(reload_loop(base, deadline, args.reload_every, tally)))
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.seconds + 120)
    return time.monotonic() - started


def metrics(base: str) -> dict[str, float]:
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", timeout=30).text
    out: Counter[str] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] += sample.value
            out[sample.name] += sample.value if labels else 0
    return dict(out)


def _classes(counts: Counter[int]) -> str:
    by = Counter(f"{code // 100}xx" for code in counts.elements())
    return " ".join(f"{k}={by[k]}" for k in ("2xx", "3xx", "4xx", "5xx")) + f"  ({dict(sorted(counts.items()))})"


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] * 1000 if ordered else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", default=None, help="a bundle folder (default: train a small one)")
    parser.add_argument("--clients", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--bad-share", type=float, default=0.05)
    parser.add_argument("--reload-every", type=float, default=2.0)
    parser.add_argument("--partial", type=int, default=500, help="never-finished connections held open")
    parser.add_argument("--request-timeout", type=float, default=10.0, help="the server's --request-timeout")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.clients < 1 or args.seconds <= 0 or not 0 <= args.bad_share <= 1 or args.reload_every <= 0 or args.partial < 0:
        parser.error("--clients >= 1, --seconds > 0, 0 <= --bad-share <= 1, --reload-every > 0, --partial >= 0")
    partial, note = _fit_open_files(args.partial, args.clients)
    with tempfile.TemporaryDirectory(prefix="tierroute-soak-") as tmp:
        work = Path(tmp)
        bundle = Path(args.bundle) if args.bundle else train_bundle(work)
        port, log_path, server_log = _free_port(), work / "decisions.jsonl", work / "serve.log"
        command = [
            sys.executable,
            "-m",
            "tierroute.cli",
            "serve",
            "--bundle",
            str(bundle),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--decision-log",
            str(log_path),
            "--request-timeout",
            str(args.request_timeout),
            "--deadline-ms",
            "10000",
        ]
        with open(server_log, "wb") as sink:
            server = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, cwd=work)
        base = f"http://127.0.0.1:{port}"
        try:
            import httpx

            for _ in range(600):  # up within 60 s, or give up
                if server.poll() is not None:
                    raise SystemExit(f"tierroute serve exited {server.returncode}: {server_log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
            else:
                raise SystemExit(f"tierroute serve did not come up: {server_log.read_text()[-2000:]}")
            with httpx.Client(base_url=base, timeout=30) as warm:  # warm-up: lazy imports and first decisions
                warm_200s = sum(warm.post("/v1/route", json=GOOD[k % len(GOOD)]).status_code == 200 for k in range(200))
                warm.post("/admin/reload")
            rss_before = _rss_kib(server.pid)
            tally = Tally()
            print(
                f"soak: {args.clients} clients, {args.seconds:g} s, {args.bad_share:.0%} bad, reload every "
                f"{args.reload_every:g} s, {partial} partial connections (server --request-timeout "
                f"{args.request_timeout:g} s), pid {server.pid}" + (f"; {note}" if note else ""),
                flush=True,
            )
            elapsed = asyncio.run(load(base, port, args, partial, tally))
            rss_after = _rss_kib(server.pid)
            values = metrics(base)
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=30)
        lines = log_path.read_text(encoding="utf-8").splitlines()
        parsed = sum(1 for line in lines if isinstance(json.loads(line), dict))
        tracebacks = server_log.read_text(encoding="utf-8", errors="replace").count("Traceback")
    return report(tally, elapsed, values, warm_200s, len(lines), parsed, rss_before, rss_after, tracebacks)


def report(
    t: Tally,
    elapsed: float,
    values: dict[str, float],
    warm_200s: int,
    log_lines: int,
    parsed: int,
    rss_before: int,
    rss_after: int,
    tracebacks: int,
) -> int:
    requests = sum(t.good.values()) + sum(t.bad.values())
    ok = t.good[200]
    decisions_metric = values.get("tierroute_decisions_total", 0.0)
    expected = ok + warm_200s
    growth = (rss_after - rss_before) / rss_before
    five_xx = sum(n for code, n in (t.good + t.bad + t.reloads).items() if code >= 500)
    print(f"requests/s           {requests / elapsed:.1f}  ({requests} route requests in {elapsed:.1f} s)")
    print(f"latency (well-formed) p50 {_pct(t.latency, 50):.1f} ms  p99 {_pct(t.latency, 99):.1f} ms")
    print(f"well-formed answers  {_classes(t.good)}")
    print(f"malformed answers    {_classes(t.bad)}  not 4xx: {dict(t.bad_misanswered) or 0}")
    print(
        f"connection errors    well-formed {sum(t.good_conn_errors.values())} {dict(t.good_conn_errors) or ''}  "
        f"malformed {sum(t.bad_conn_errors.values())} {dict(t.bad_conn_errors) or ''}"
    )
    print(f"reloads              {dict(t.reloads)}  errors {dict(t.reload_errors) or 0}")
    print(
        f"partial connections  opened {t.partial_opened}, closed by the server {t.partial_closed_by_server} "
        f"({t.partial_408} with a 408), connect errors {dict(t.partial_connect_errors) or 0}"
    )
    print(
        f"server metrics       client errors {values.get('tierroute_client_errors_total', 0):.0f}, server errors "
        f"{values.get('tierroute_server_errors_total', 0):.0f}, refused connections "
        f"{values.get('tierroute_connections_refused_total', 0):.0f}, decision-log dropped "
        f"{values.get('tierroute_decision_log_dropped_total', 0):.0f} / torn "
        f"{values.get('tierroute_decision_log_torn_total', 0):.0f}"
    )
    print(f"server RSS           before {rss_before / 1024:.1f} MiB, after {rss_after / 1024:.1f} MiB ({growth:+.1%})")
    print(f"server log           {tracebacks} tracebacks")
    print(
        f"reconciliation       200s {ok} (+{warm_200s} warm-up) | decision-log lines {log_lines} ({parsed} parse) | "
        f"tierroute_decisions_total {decisions_metric:.0f}"
    )
    failures = [
        *(["5xx answers"] if five_xx else []),
        *(["connection errors for well-formed clients"] if t.good_conn_errors else []),
        *(["a malformed request not answered 4xx"] if t.bad_misanswered else []),
        *(["decision log != 200s"] if not log_lines == parsed == expected else []),
        *(["tierroute_decisions_total != 200s"] if decisions_metric != expected else []),
        *([f"RSS grew {growth:.1%}"] if growth >= 0.10 else []),
        *(["tracebacks in the server log"] if tracebacks else []),
    ]
    print("PASS" if not failures else "FAIL: " + "; ".join(failures))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
