"""``voxmetric serve`` under load, on loopback: throughput, latency, errors, server memory.

    .venv/bin/python benchmarks/serve.py                       # 300 verifications, 4 clients, 3 rounds
    .venv/bin/python benchmarks/serve.py --requests 10000 --rounds 10   # memory flat over many requests?
    .venv/bin/python benchmarks/serve.py --clients 8 --workers 2 --max-seconds 120

Starts ``voxmetric serve MODEL`` on 127.0.0.1 (a free port, a random token) in a
subprocess, and runs ``--clients`` concurrent clients (threads, one keep-alive HTTP
connection each) posting ``POST /v1/verify`` with pairs of real recordings from
``../shared/data/real`` (relative to the repository root; ``--data`` for another
folder) until ``--requests`` are done or ``--max-seconds`` have passed, in
``--rounds`` rounds, each preceded by the in-process measurement (below). Prints
throughput (verifications/s and the embeddings/s they amount to: two per
verification), p50/p95/p99 latency, errors (any non-200 answer or failed request),
and the server's resident memory after each round and its peak (``VmHWM``). For
comparison, the in-process rate on the same files and cores, measured right before
each served round (a shared machine's background load changes from minute to
minute): ``SpeakerModel.embed`` in loops without HTTP, in three layouts (torch on all
cores; one torch thread; one loop per core), the best of which is the ceiling the
server is measured against. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "real"


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_server(model: str, workers: int | None, folder: Path) -> tuple[subprocess.Popen, str, str, Path]:
    token = secrets.token_urlsafe(24)
    token_file = folder / "token.txt"
    token_file.write_text(token + "\n")
    log_path = folder / "server.log"
    command = [sys.executable, "-m", "voxmetric.cli", "serve", model, "--host", "127.0.0.1", "--port", "0",
               "--token-file", str(token_file), "--log-level", "warning", "--queue", "256"]
    if workers:
        command += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.time() + 180
    while time.time() < deadline:
        match = re.search(r"on http://127\.0\.0\.1:(\d+)/ \(([^)]*)\)", log_path.read_text())
        if match:
            url = f"http://127.0.0.1:{match.group(1)}"
            import httpx

            try:
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    return process, url, token, log_path
            except httpx.HTTPError:
                pass
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the server did not start:\n{log_path.read_text()}")


def load(url: str, token: str, pairs: list[tuple[Path, Path]], requests: int, clients: int, max_seconds: float,
         pid: int, first: int = 0) -> dict:
    import httpx

    payloads = [((a.name, a.read_bytes()), (b.name, b.read_bytes())) for a, b in pairs]
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(first, first + requests))
    deadline = time.monotonic() + max_seconds
    done = [0]

    def client() -> None:
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {token}"}) as http:
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                (na, da), (nb, db) = payloads[i % len(payloads)]
                started = time.perf_counter()
                try:
                    response = http.post(url + "/v1/verify", files={"a": (na, da), "b": (nb, db)})
                    ok = response.status_code == 200 and "score" in response.json()
                    problem = None if ok else f"HTTP {response.status_code}: {response.text[:200]}"
                except httpx.HTTPError as error:
                    problem = f"{type(error).__name__}: {error}"
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    if problem:
                        errors.append(problem)
                    done[0] += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"count": len(latencies), "wall_s": wall, "latencies": latencies, "errors": errors,
            "rss_kib": _rss_kib(pid), "peak_rss_kib": _rss_kib(pid, "VmHWM")}


def in_process_rates(model, files: list[Path], seconds: float) -> dict[str, float]:
    """Embeddings/s of ``model.embed`` on ``files`` in this process, in three layouts of the
    same cores: one loop with torch on all cores, one loop with one torch thread, and one
    loop per core with one torch thread each (the server's layout, without HTTP)."""
    import torch

    cores = len(os.sched_getaffinity(0))
    layouts = {f"1 loop x {cores} torch threads": (1, cores), "1 loop x 1 torch thread": (1, 1)}
    if cores > 1:
        layouts[f"{cores} loops x 1 torch thread"] = (cores, 1)
    rates = {}
    for label, (loops, threads) in layouts.items():
        torch.set_num_threads(threads)
        model.embed(str(files[0]))  # warm-up
        counts = [0] * loops
        deadline = time.perf_counter() + seconds

        def loop(k: int) -> None:
            i = k
            while time.perf_counter() < deadline:
                model.embed(str(files[i % len(files)]))
                counts[k] += 1
                i += loops

        started = time.perf_counter()
        workers = [threading.Thread(target=loop, args=(k,)) for k in range(loops)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        rates[label] = sum(counts) / (time.perf_counter() - started)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sinctdnn-aam")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of real recordings (default "
                                                                         "../shared/data/real)")
    parser.add_argument("--requests", type=int, default=300, help="verifications to send in all (default 300; "
                                                                  "e.g. 10000 for the memory check)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--workers", type=int, help="server worker threads (default: the server's, = cores, max 4)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternate in-process and served measurements this many times (default 3): on a "
                             "shared machine the background load changes, so each served round is compared "
                             "with the in-process rate measured just before it")
    parser.add_argument("--max-seconds", type=float, default=900, help="stop sending after this long in all "
                                                                       "(default 900)")
    parser.add_argument("--files", type=int, default=16, help="recordings used (default 16)")
    parser.add_argument("--in-process-seconds", type=float, default=6, help="seconds per in-process layout and "
                                                                            "round (default 6)")
    args = parser.parse_args()
    if args.requests < 1 or args.clients < 1 or args.rounds < 1:
        parser.error("--requests, --clients and --rounds must be at least 1")
    files = sorted(args.data.glob("*/*.flac"))
    if not files:
        raise SystemExit(f"no recordings (*/*.flac) in {args.data.resolve()}")
    step = max(1, len(files) // args.files)
    files = files[::step][: args.files]
    pairs = [(files[i], files[(i + 1) % len(files)]) for i in range(len(files))]
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cores} cores ({os.uname().machine}), python {sys.version.split()[0]}; model {args.model}; "
          f"{len(files)} recordings from {args.data.resolve()}")
    from voxmetric.inference.speaker_model import load_model

    model = load_model(args.model)
    deadline = time.monotonic() + args.max_seconds
    rounds = []
    with tempfile.TemporaryDirectory(prefix="voxmetric-bench-") as folder:
        process, url, token, log_path = start_server(args.model, args.workers, Path(folder))
        try:
            banner = log_path.read_text().splitlines()[0]
            print(f"server: {banner.split(' on ', 1)[1]}")
            sent = 0
            for r in range(args.rounds):
                share = args.requests // args.rounds + (1 if r < args.requests % args.rounds else 0)
                local = in_process_rates(model, files, args.in_process_seconds)
                served = load(url, token, pairs, share, args.clients, max(1.0, deadline - time.monotonic()),
                              process.pid, first=sent)
                sent += served["count"]
                rounds.append((local, served))
                best = max(local, key=local.get)
                rate = served["count"] / served["wall_s"]
                print(f"round {r + 1}: in process {', '.join(f'{k} {v:.2f}' for k, v in local.items())} "
                      f"embeddings/s; served {2 * rate:.2f} embeddings/s ({rate:.2f} verifications/s, "
                      f"{len(served['errors'])} errors) = {2 * rate / local[best]:.0%} of the best in-process; "
                      f"server RSS {served['rss_kib'] / 1024:.0f} MiB")
                if time.monotonic() > deadline:
                    print("  (--max-seconds reached)")
                    break
        finally:
            process.terminate()
            process.wait(30)
        server_log = log_path.read_text()
    latencies = [x * 1000 for _, served in rounds for x in served["latencies"]]
    errors = [e for _, served in rounds for e in served["errors"]]
    count = sum(served["count"] for _, served in rounds)
    wall = sum(served["wall_s"] for _, served in rounds)
    rate = count / wall
    print(f"\nserve, POST /v1/verify, {args.clients} concurrent clients, loopback, all rounds:")
    print(f"  requests {count} in {wall:.1f} s: {rate:.2f} verifications/s = {2 * rate:.2f} embeddings/s")
    print(f"  latency ms: p50 {_percentile(latencies, 50):.0f}  p95 {_percentile(latencies, 95):.0f}  "
          f"p99 {_percentile(latencies, 99):.0f}  max {max(latencies):.0f}  mean {statistics.mean(latencies):.0f}")
    print(f"  errors: {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    rss = [served["rss_kib"] / 1024 for _, served in rounds]
    print(f"  server RSS after each round: {', '.join(f'{x:.0f}' for x in rss)} MiB; "
          f"peak (VmHWM) {rounds[-1][1]['peak_rss_kib'] / 1024:.0f} MiB")
    ratios = [2 * served["count"] / served["wall_s"] / max(local.values()) for local, served in rounds]
    layouts = {k: statistics.mean(local[k] for local, _ in rounds) for k in rounds[0][0]}
    print("in process, same files and cores (mean of rounds): " + ", ".join(
        f"{k} {v:.2f} embeddings/s" for k, v in layouts.items()))
    print(f"served / best in-process, per round: {', '.join(f'{x:.0%}' for x in ratios)}; "
          f"median {statistics.median(ratios):.0%}")
    if "Traceback" in server_log:
        print("server log has a traceback:\n" + server_log[-2000:])
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
