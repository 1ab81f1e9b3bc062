"""LLM client throughput: concurrency 32 vs sequential against a 200 ms-latency loopback server,
and the requests a warm-cache re-run sends (target: none).

The server is the scripted OpenAI-compatible server from ``tests/servers.py``, run as a subprocess so
it does not share the client's interpreter. Prints::

    RESULT llm_client_concurrency ratio=<throughput at 32 / sequential> seconds=<concurrent run> instances=N
    RESULT llm_client_warm_cache value=<requests sent by the re-run> unit=requests
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from instructcoder_utils.config import LLMConfig  # noqa: E402
from instructcoder_utils.llm import ChatRequest, LLMClient  # noqa: E402


def start_server(latency: float) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "servers.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()  # "PORT <n>" once it listens
    if not line.startswith("PORT "):
        proc.kill()
        raise RuntimeError(f"scripted server did not start: {line!r}")
    return proc, int(line.split()[1])


def server_requests(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stats", timeout=10) as resp:
        return json.load(resp)["requests"]


def requests(n: int, tag: str) -> list[ChatRequest]:
    return [ChatRequest(id=f"{tag}-{i}", messages=[{"role": "user", "content": f"{tag} item {i}"}],
                        prompt_version="bench") for i in range(n)]


def timed_run(cfg: LLMConfig, cache: Path, reqs: list[ChatRequest]) -> tuple[float, LLMClient]:
    client = LLMClient(cfg, cache_path=cache)
    start = time.perf_counter()
    results = client.run(reqs, desc=f"concurrency {cfg.concurrency}")
    seconds = time.perf_counter() - start
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} requests failed, e.g. {failed[0].error}")
    return seconds, client


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="requests at concurrency 32")
    ap.add_argument("--n-seq", type=int, default=32, help="requests in the sequential baseline")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()

    proc, port = start_server(args.latency)
    try:
        with tempfile.TemporaryDirectory(prefix="bench_llm_") as tmp:
            tmp = Path(tmp)
            base = {"provider": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "model": "bench",
                    "api_key_env": "BENCH_LLM_KEY_UNSET", "max_tokens": 16, "timeout_s": 30}
            timed_run(LLMConfig(**base, concurrency=1), tmp / "warmup.sqlite", requests(2, "warmup"))

            seq_s, _ = timed_run(LLMConfig(**base, concurrency=1), tmp / "seq.sqlite", requests(args.n_seq, "seq"))
            conc_cfg = LLMConfig(**base, concurrency=args.concurrency)
            conc_s, _ = timed_run(conc_cfg, tmp / "conc.sqlite", requests(args.n, "conc"))
            ratio = (args.n / conc_s) / (args.n_seq / seq_s)
            print(f"sequential: {args.n_seq} requests in {seq_s:.2f} s; concurrency {args.concurrency}: "
                  f"{args.n} in {conc_s:.2f} s", file=sys.stderr)
            print(f"RESULT llm_client_concurrency ratio={ratio:.1f} seconds={conc_s:.2f} instances={args.n} "
                  f"baseline_seconds={seq_s:.2f} baseline_instances={args.n_seq} latency_s={args.latency}")

            before = server_requests(port)
            _, warm = timed_run(conc_cfg, tmp / "conc.sqlite", requests(args.n, "conc"))
            sent = server_requests(port) - before
            assert warm.usage["requests"] == sent
            print(f"RESULT llm_client_warm_cache value={sent} unit=requests instances={args.n} "
                  f"cache_hits={warm.usage['cache_hits']}")
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    os.environ.pop("BENCH_LLM_KEY_UNSET", None)
    main()
