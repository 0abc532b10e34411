"""What a Redis restart costs the shared limiter: 429s, the pause in admissions, accepted requests.

Three clients, each with its own ``RedisRateLimiter`` (own connection, same key, ``rates`` = the emulator's
limit, ``margin``), send to one in-process emulator that answers 429 beyond its sliding-window limit. Two clients
work from the start; as soon as the server has seen ``--restart-after`` requests, redis-server is killed and
started again empty on the same port (no persistence), and the third client starts its work at that moment.

Rows (same run, same load):

- baseline: no restart (the third client starts at the same moment);
- restart: the limiter as shipped (the lost state is noticed and every process holds one window);
- restart, hold off: the same with the hold switched off through a private attribute, which is what the
  limiter did before it looked for a lost state (the windows simply start empty).

"pause" is the longest time without any admission after the restart moment (baseline: after the same moment).

    python benchmarks/redis_restart.py [--rates 10/1s] [--margin 0.1] [--per-client 20] [--restart-after 10]

With ``--restart-after 10`` (a full window at 10/1s) the server's window is full when Redis restarts, which is
when a limiter that starts from empty windows gets the most 429s. ``--restart-after 10 25`` runs more points.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_load, markdown_table, small_jpeg

from netverify_async import Image, NetverifyClient, NetverifyError, NetverifyRequest, RetryPolicy
from netverify_async.emulator import run_emulator
from netverify_async.redis import RedisRateLimiter, RedisSlot


class Redis:
    """A redis-server without persistence on a fixed loopback port that can be killed and started again."""

    def __init__(self, workdir: str) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            raise SystemExit("redis-server is not installed")
        self.executable = executable
        self.workdir = workdir
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.workdir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.01)

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


class Recording(RedisRateLimiter):
    """Records the local time of every slot it hands out."""

    def __init__(self, *args: Any, granted_at: list[float], hold: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._granted_at = granted_at
        if not hold:
            self._hold_us = 0  # what the limiter did before it looked for a lost state

    async def _try_start(self) -> Any:
        outcome = await super()._try_start()
        if isinstance(outcome, RedisSlot):
            self._granted_at.append(anyio.current_time())
        return outcome


async def scenario(
    redis: Redis, args: argparse.Namespace, restart_after: int, *, restart: bool, hold: bool
) -> list[object]:
    key = f"bench:{uuid.uuid4().hex}"
    granted_at: list[float] = []
    limiters = [
        Recording(redis.url, key=key, rates=args.rates, margin=args.margin, granted_at=granted_at, hold=hold)
        for _ in range(3)
    ]
    await limiters[0].reset()
    jpeg = small_jpeg()
    outcomes: dict[str, int] = {"ok": 0, "error": 0}
    moment: list[float] = []
    async with run_emulator(processing_delay=0.0) as emu:
        emu.set_faults(rate_limit=args.rates, retry_after=True)
        go = anyio.Event()

        async def trigger() -> None:
            while emu.stats.requests < restart_after:
                await anyio.sleep(0.002)
            moment.append(anyio.current_time())
            if restart:
                await anyio.to_thread.run_sync(redis.kill)
                await anyio.to_thread.run_sync(redis.start)
            go.set()

        async def run(index: int) -> None:
            if index == 2:
                await go.wait()
            client = NetverifyClient(
                api_token=emu.api_token,
                api_secret=emu.api_secret,
                base_url=emu.base_url,
                user_agent="Example Corp Benchmarks/1.0",
                rate_limit=limiters[index],
                retry=RetryPolicy(max_attempts=1, deadline=120),
            )
            async with client, anyio.create_task_group() as tg:
                for n in range(args.per_client):

                    async def one(ref: str) -> None:
                        request = NetverifyRequest(
                            merchant_id_scan_reference=ref,
                            frontside_image=Image.from_bytes(jpeg),
                            country="AUT",
                            id_type="PASSPORT",
                        )
                        try:
                            await client.perform_netverify(request)
                            outcomes["ok"] += 1
                        except NetverifyError:
                            outcomes["error"] += 1

                    tg.start_soon(one, f"c{index}-{n}")

        started = anyio.current_time()
        async with anyio.create_task_group() as tg:
            tg.start_soon(trigger)
            for index in range(3):
                tg.start_soon(run, index)
        took = anyio.current_time() - started
        stats = emu.stats
    for limiter in limiters:
        await limiter.aclose()
    after = sorted(t for t in granted_at if t >= moment[0])
    before = [t for t in granted_at if t < moment[0]]
    marks = [moment[0], *after]
    pause = max(b - a for a, b in itertools.pairwise(marks)) if after else float("nan")
    label = "baseline: no restart" if not restart else ("restart" if hold else "restart, hold off")
    return [
        restart_after,
        label,
        stats.status_counts.get(429, 0),
        f"{outcomes['ok']} / {outcomes['ok'] + outcomes['error']}",
        len(before),
        f"{pause:.2f}",
        f"{took:.2f}",
        sum(limiter.state_losses for limiter in limiters),
    ]


async def main(args: argparse.Namespace) -> None:
    rows = []
    with tempfile.TemporaryDirectory(prefix="netverify-bench-restart-") as workdir:
        redis = Redis(workdir)
        try:
            for restart_after in args.restart_after:
                for restart, hold in ((False, True), (True, True), (True, False)):
                    rows.append(await scenario(redis, args, restart_after, restart=restart, hold=hold))
        finally:
            redis.kill()
    print(
        f"Limit {args.rates} at the emulator and in each limiter (margin {args.margin} s), 3 clients x "
        f"{args.per_client} requests; the restart (or, in the baseline, the same moment) comes when the server "
        f"has seen the number of requests in the first column. "
        f"{machine_load()}\n"
    )
    print(
        markdown_table(
            ["restart after", "run", "429s", "accepted", "admitted before the restart", "pause after it (s)", "run (s)",
             "losses noticed"],
            rows,
            "rlrrrrrr",
        )
    )  # fmt: skip
    print(f"\nConfigured hold after a loss: longest window + margin = "
          f"{max(w.seconds for w in RedisRateLimiter('redis://x', rates=args.rates).windows) + args.margin:.2f} s")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", default="10/1s")
    parser.add_argument("--margin", type=float, default=0.1)
    parser.add_argument("--per-client", type=int, default=20)
    parser.add_argument(
        "--restart-after",
        type=int,
        nargs="+",
        default=[10],
        help="requests seen by the server (one run each)",
    )
    anyio.run(main, parser.parse_args(), backend="asyncio")
    os._exit(0)
