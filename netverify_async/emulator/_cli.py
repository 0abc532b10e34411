"""The emulator's command line: ``python -m netverify_async.emulator`` and ``netverify-async emulator``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import signal
import sys
from collections.abc import Sequence
from typing import Any

from .._errors import ConfigurationError

__all__ = ["add_arguments", "build_parser", "config_from_args", "main", "serve"]


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected a port number from 0 to 65535") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be from 0 to 65535 (0 picks a free port)")
    return port


def _latency(text: str) -> tuple[float, float]:
    low, sep, high = text.partition("-")
    try:
        return (float(low), float(high)) if sep else (float(low), float(low))
    except ValueError:
        raise argparse.ArgumentTypeError("expected SECONDS or LOW-HIGH, e.g. 0.05 or 0.01-0.2") from None


def _error_rate(text: str) -> tuple[int, float]:
    status, sep, rate = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return (int(status), float(rate))
    except ValueError:
        raise argparse.ArgumentTypeError("expected STATUS=RATE, e.g. 503=0.1") from None


def _reference_fault(text: str) -> tuple[str, str]:
    from ._config import REFERENCE_FAULT_ACTIONS

    reference, sep, action = text.rpartition("=")
    if not sep or not reference or action not in REFERENCE_FAULT_ACTIONS:
        raise argparse.ArgumentTypeError(
            f"expected REFERENCE=ACTION with ACTION one of {','.join(REFERENCE_FAULT_ACTIONS)}, e.g. ref-7=drop"
        )
    return (reference, action)


def _csv(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the emulator's options to ``parser``."""
    from ._outcomes import Outcome

    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    server.add_argument(
        "--port", type=_port, default=8080, help="port to listen on; 0 picks a free one (default 8080)"
    )
    server.add_argument("--http", choices=("auto", "h11", "httptools"), default="auto", help="HTTP parser")
    server.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop")
    server.add_argument("--log-level", default="warning", help="uvicorn log level (default: warning)")

    api = parser.add_argument_group("API behaviour")
    api.add_argument("--api-token", default="emulator-api-token", help="Basic-auth user id to accept")
    api.add_argument("--api-secret", default="emulator-api-secret", help="Basic-auth password to accept")
    api.add_argument(
        "--processing-delay",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="time a scan stays PENDING (0.5)",
    )
    api.add_argument(
        "--default-outcome",
        default="approved",
        metavar="OUTCOME",
        help=f"result of scans that do not ask for one: {', '.join(Outcome.names())}",
    )
    api.add_argument(
        "--no-image-checks", action="store_true", help="skip the header check of uploaded images"
    )
    api.add_argument(
        "--liveness-images",
        type=int,
        default=3,
        metavar="N",
        help="synthetic liveness images of each scan submitted with a face image (0 to 20; default 3)",
    )
    api.add_argument("--admin-token", help="require this X-Emulator-Admin-Token on /__emulator/ endpoints")

    callbacks = parser.add_argument_group("callbacks")
    callbacks.add_argument(
        "--allow-http-callbacks",
        action="store_true",
        help="accept http(s) callback URLs on loopback hosts with a port (127.0.0.1, localhost, [::1])",
    )
    callbacks.add_argument("--callback-url-override", metavar="URL", help="send every callback to this URL")
    callbacks.add_argument(
        "--deliver-external-callbacks", action="store_true", help="really call non-loopback callback hosts"
    )
    callbacks.add_argument(
        "--callback-retries", type=int, default=3, help="further attempts after a failure (3)"
    )
    callbacks.add_argument(
        "--callback-backoff",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay, doubled (0.5)",
    )

    faults = parser.add_argument_group("faults (all off by default)")
    faults.add_argument(
        "--latency", type=_latency, metavar="SECONDS|LOW-HIGH", help="delay before each answer"
    )
    faults.add_argument(
        "--rate-limit", metavar="SPEC", help="performNetverify limit, e.g. '5/5s' or '3/s,180/min'"
    )
    faults.add_argument("--retrieval-rate-limit", metavar="SPEC", help="retrieval/delete limit, e.g. '75/5s'")
    faults.add_argument(
        "--retry-after", action="store_true", help="send Retry-After with 429 (injected 503s always carry it)"
    )
    faults.add_argument(
        "--error",
        type=_error_rate,
        action="append",
        default=[],
        metavar="STATUS=RATE",
        help="inject 5xx, e.g. 503=0.1",
    )
    faults.add_argument(
        "--error-phase",
        choices=("before", "after"),
        default="before",
        help="500/502/504 before or after the scan",
    )
    faults.add_argument(
        "--drop-rate", type=float, default=0.0, help="drop the connection after creating the scan"
    )
    faults.add_argument("--slow-rate", type=float, default=0.0, help="answer slowly after creating the scan")
    faults.add_argument("--slow-seconds", type=float, default=5.0, help="how slow a slow answer is (5)")
    faults.add_argument(
        "--slow-mode", choices=("delay", "drip"), default="delay", help="silence, or dripped bytes"
    )
    faults.add_argument(
        "--fault-sequence", type=_csv, default=(), metavar="A,B,...", help="one-shot actions first"
    )
    faults.add_argument(
        "--fault-reference",
        type=_reference_fault,
        action="append",
        default=[],
        metavar="REF=ACTION",
        help="an after-processing fault for the first submission of one merchant reference, e.g. ref-7=drop",
    )
    faults.add_argument("--seed", type=int, help="seed of the fault generator (reproducible runs)")
    faults.add_argument(
        "--faults-apply-to", type=_csv, default=("submit",), metavar="KINDS", help="submit,retrieval,delete"
    )


def config_from_args(args: argparse.Namespace) -> Any:
    """The :class:`EmulatorConfig` the parsed options describe."""
    from ._config import EmulatorConfig, Faults

    faults = Faults(
        latency=args.latency or (0.0, 0.0),
        rate_limit=args.rate_limit,
        retrieval_rate_limit=args.retrieval_rate_limit,
        retry_after=args.retry_after,
        errors=dict(args.error),
        error_phase=args.error_phase,
        drop_rate=args.drop_rate,
        slow_rate=args.slow_rate,
        slow_seconds=args.slow_seconds,
        slow_mode=args.slow_mode,
        sequence=args.fault_sequence,
        by_reference=dict(getattr(args, "fault_reference", ())),
        seed=args.seed,
        apply_to=args.faults_apply_to,
    )
    return EmulatorConfig(
        api_token=args.api_token,
        api_secret=args.api_secret,
        processing_delay=args.processing_delay,
        default_outcome=args.default_outcome,
        allow_http_callbacks=args.allow_http_callbacks,
        callback_url_override=args.callback_url_override,
        deliver_external_callbacks=args.deliver_external_callbacks,
        callback_retries=args.callback_retries,
        callback_backoff=args.callback_backoff,
        check_images=not args.no_image_checks,
        liveness_images=args.liveness_images,
        admin_token=args.admin_token,
        faults=faults,
    )


def serve(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C or SIGTERM. Prints ``listening on URL`` (one line on stdout) once the port is open;
    returns 0 after a shutdown by signal, 1 when the port cannot be opened, 2 for bad settings or a missing
    ``emulator`` extra (one ``error:`` line on stderr each)."""
    from ._app import EmulatorApp
    from ._server import base_url_of, bind_socket, import_uvicorn

    try:
        uvicorn = import_uvicorn()
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        config = config_from_args(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = EmulatorApp(config)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"error: {_bind_problem(args.host, args.port, exc)}", file=sys.stderr)
        return 1
    server_config = uvicorn.Config(
        app,
        http=args.http,
        loop=args.loop,
        lifespan="on",
        log_level=args.log_level,
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=1,
    )
    # a request still running when the shutdown's grace period ends (a latency or slow fault) is cancelled:
    # uvicorn reports that in one line; the traceback of the cancellation it also logs says nothing more
    logging.getLogger("uvicorn.error").addFilter(_drop_cancelled_requests)
    server = _server_class(uvicorn)(server_config)
    print(f"listening on {base_url_of(sock)}", flush=True)
    interrupted = False
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # a Ctrl-C outside uvicorn's own handlers (during its startup): a shutdown too
        interrupted = True
    finally:
        sock.close()
    if server.started or interrupted or getattr(server, "stopped_by_signal", False):
        return 0
    print("error: the emulator did not start (see the messages above)", file=sys.stderr)
    return 1


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {where}: {reason} (choose another --port, or --port 0 for a free one)"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {where}: {reason} (ports below 1024 need privileges; use --port 0)"
    return f"cannot listen on {where}: {reason} (check --host and --port)"


def _drop_cancelled_requests(record: logging.LogRecord) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, asyncio.CancelledError)


def _server_class(uvicorn: Any) -> Any:
    """A uvicorn server that shuts down gracefully on SIGINT / SIGTERM and then returns, instead of raising
    the signal again once it has stopped (uvicorn's default, which turns a clean shutdown into exit 130 or a
    death by SIGTERM)."""

    def handle_exit(self: Any, sig: int, frame: Any) -> None:
        self.stopped_by_signal = True
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: do not wait for open connections
        else:
            self.should_exit = True

    return type("Server", (uvicorn.Server,), {"handle_exit": handle_exit})


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m netverify_async.emulator``."""
    parser = argparse.ArgumentParser(
        prog="python -m netverify_async.emulator",
        usage="%(prog)s [options]  (--help lists them)",
        description="Serve a local emulator of Jumio's Netverify API (performNetverify, retrieval, delete).",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m netverify_async.emulator``; returns the exit status (see :func:`serve`)."""
    args = build_parser().parse_args(argv)
    return serve(args)
