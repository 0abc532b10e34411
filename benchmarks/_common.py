"""Helpers shared by the client benchmarks: the emulator and a throwaway Redis as subprocesses, generated images,
CPU and load readings, and markdown tables.

Import it from a benchmark script run as ``python benchmarks/<name>.py`` (the script's folder is on
``sys.path``, so ``import _common`` works).
"""

from __future__ import annotations

import base64
import io
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

#: The emulator's own public test credentials (its defaults; never real ones).
EMULATOR_TOKEN = "emulator-api-token"
EMULATOR_SECRET = "emulator-api-secret"
USER_AGENT = "Example Corp NetverifyBenchmark/1.0"


def basic_auth(token: str = EMULATOR_TOKEN, secret: str = EMULATOR_SECRET) -> str:
    """The ``Authorization`` header value the client sends for these credentials."""
    return "Basic " + base64.b64encode(f"{token}:{secret}".encode()).decode("ascii")


# -- the emulator in its own process ---------------------------------------------------------------------------


class EmulatorProcess:
    """A running ``python -m netverify_async.emulator`` child: its base URL and its process id."""

    def __init__(self, proc: subprocess.Popen[str], base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the emulator has used so far (Linux only; None elsewhere)."""
        return process_cpu_seconds(self.proc.pid)

    def reset(self) -> None:
        """Forget the scans stored so far (``POST /__emulator/reset``), so memory does not grow between runs."""
        import urllib.request

        req = urllib.request.Request(self.base_url + "/__emulator/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            resp.read()


@contextmanager
def listening_process(
    cmd: list[str], what: str, *, start_timeout: float = 60.0, stop_timeout: float = 10.0, quiet: bool = True
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``cmd``, wait for its first stdout line ``listening on URL``; yield the process and the URL (without
    a trailing ``/``); stop it on exit. ``quiet`` discards its stderr (else it goes to ours)."""
    stderr = subprocess.DEVNULL if quiet else None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
    try:
        assert proc.stdout is not None
        first_line: list[str] = []
        reader = threading.Thread(target=lambda: first_line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(start_timeout)
        line = first_line[0].strip() if first_line else ""
        if not line.startswith("listening on "):
            raise RuntimeError(f"{what} did not start (first line: {line!r})")
        yield proc, line.removeprefix("listening on ").rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextmanager
def emulator_process(*extra_args: str, start_timeout: float = 60.0) -> Iterator[EmulatorProcess]:
    """Start the emulator as a subprocess on a free loopback port; stop it on exit.

    ``extra_args`` are passed to its command line (e.g. ``"--latency", "0.2"``). Scans are ready at once
    (``--processing-delay 0``) unless ``extra_args`` say otherwise.
    """
    cmd = [sys.executable, "-m", "netverify_async.emulator", "--port", "0", "--processing-delay", "0"]
    cmd.extend(extra_args)
    with listening_process(cmd, "the emulator", start_timeout=start_timeout) as (proc, url):
        yield EmulatorProcess(proc, url)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str | None]:
    """``NETVERIFY_TEST_REDIS_URL``, or a throwaway redis-server (no persistence) on a free loopback port for the
    duration of the block; None when neither is available."""
    external = os.environ.get("NETVERIFY_TEST_REDIS_URL")
    if external:
        yield external
        return
    executable = shutil.which("redis-server")
    if executable is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="netverify-bench-redis-") as workdir:
        port = _free_port()
        proc = subprocess.Popen(
            [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 10
            while not _redis_answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start")
                time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def process_cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) used by process ``pid``, read from ``/proc``; None if unavailable."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def runqueue_wait_seconds() -> float | None:
    """Time this process's main thread has spent runnable but waiting for a CPU (Linux; None elsewhere).

    On a shared machine this separates "the event loop was busy" from "the OS did not run it".
    """
    try:
        with open(f"/proc/{os.getpid()}/task/{os.getpid()}/schedstat", encoding="ascii") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def machine_load() -> str:
    """One line on the machine: cores and load average (the benchmarks run on a shared machine)."""
    try:
        one, five, fifteen = os.getloadavg()
        load = f"load average {one:.2f} / {five:.2f} / {fifteen:.2f}"
    except OSError:
        load = "load average unknown"
    return f"{os.cpu_count()} cores, {load}"


# -- images ------------------------------------------------------------------------------------------------------


def small_jpeg(width: int = 400, height: int = 300) -> bytes:
    """A small real JPEG (about 10 kB at 400x300) that passes every preflight check."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    img = PILImage.new("RGB", (width, height), (205, 212, 190))
    draw = ImageDraw.Draw(img)
    for x in range(0, width, 100):
        draw.line([(x, 0), (width - x, height)], fill=(x % 255, 90, 130), width=2)
    draw.rectangle([15, 15, width // 3, height // 2], outline=(20, 20, 20), width=3)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=70)
    return out.getvalue()


def large_jpeg(target_bytes: int = 10_000_000, *, seed: int = 7, max_side: int = 7900) -> bytes:
    """A real, decodable JPEG of about ``target_bytes`` (at most 15,000,000), under 8000 px per side.

    Seeded noise at high quality hardly compresses, so the file size follows the pixel count; the side is
    adjusted until the size is within a few percent of the target.
    """
    from PIL import Image as PILImage

    if target_bytes > 15_000_000:
        raise ValueError("target_bytes must be at most 15,000,000 (Jumio's image size limit)")
    rng = random.Random(seed)
    side = 2000
    best = b""
    for _ in range(6):
        noise = PILImage.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        out = io.BytesIO()
        noise.save(out, "JPEG", quality=92)
        data = out.getvalue()
        if len(data) <= 15_000_000 and abs(len(data) - target_bytes) < abs(len(best) - target_bytes):
            best = data
        if abs(len(data) - target_bytes) <= target_bytes * 0.03:
            break
        side = min(max_side, max(300, int(side * (target_bytes / len(data)) ** 0.5)))
    return best


# -- tables and statistics ---------------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: first l, others r)."""
    align = align or ("l" + "r" * (len(headers) - 1))
    lines = ["| " + " | ".join(headers) + " |"]
    lines.append("|" + "|".join("---:" if a == "r" else "---" for a in align) + "|")
    for row in rows:
        lines.append("| " + " | ".join(str(cell) for cell in row) + " |")
    return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def time_weighted_percentile(lags: Sequence[float], q: float, tick: float) -> float:
    """The ``q``-th percentile of ticker lags, each weighted by how long its tick lasted (``tick + lag``).

    A plain percentile counts a 500 ms stall once, like any 1 ms tick; weighted, it counts for the 500 ms it
    lasted, so the result approximates the lag met by an event arriving at a random moment.
    """
    if not lags:
        return 0.0
    ordered = sorted(lags)
    total = sum(tick + lag for lag in ordered)
    threshold = total * q / 100
    running = 0.0
    for lag in ordered:
        running += tick + lag
        if running >= threshold:
            return lag
    return ordered[-1]


class CpuMeter:
    """CPU used by this process and by another (the emulator) between ``start()`` and ``stop()``."""

    def __init__(self, other_pid: int | None = None) -> None:
        self.other_pid = other_pid
        self.wall = self.own = 0.0
        self.other: float | None = None

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._own0 = time.process_time()
        self._other0 = process_cpu_seconds(self.other_pid) if self.other_pid else None

    def stop(self) -> None:
        self.wall = time.perf_counter() - self._t0
        self.own = time.process_time() - self._own0
        if self._other0 is not None and self.other_pid:
            end = process_cpu_seconds(self.other_pid)
            self.other = None if end is None else end - self._other0

    @property
    def own_percent(self) -> float:
        return 100 * self.own / self.wall if self.wall else 0.0

    @property
    def other_percent(self) -> float | None:
        return None if self.other is None or not self.wall else 100 * self.other / self.wall


class RunqueueClock:
    """Seconds this thread has waited for a CPU so far (Linux schedstat; always 0.0 elsewhere), cheap to read."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(
                f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY
            )
        except OSError:
            self._fd = None

    def __call__(self) -> float:
        return 0.0 if self._fd is None else int(os.pread(self._fd, 128, 0).split()[1]) / 1e9

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
