"""A local Netverify server for tests, demos and benchmarks: the documented API, plus faults on demand.

Start it in-process::

    from netverify_async.emulator import run_emulator

    async with run_emulator(processing_delay=0) as emu:
        ...  # point a client at emu.base_url with emu.api_token / emu.api_secret

or from the command line: ``python -m netverify_async.emulator --port 0`` (prints ``listening on URL``).

Needs the ``emulator`` extra (uvicorn).
"""

from __future__ import annotations

from ._app import EmulatorApp as EmulatorApp
from ._app import create_app as create_app
from ._config import EmulatorConfig as EmulatorConfig
from ._config import Faults as Faults
from ._config import RateWindow as RateWindow
from ._config import parse_rate_limit as parse_rate_limit
from ._outcomes import Outcome as Outcome
from ._receiver import CallbackReceiver as CallbackReceiver
from ._receiver import ReceivedCallback as ReceivedCallback
from ._receiver import run_callback_receiver as run_callback_receiver
from ._samples import API_HEADERS as API_HEADERS
from ._samples import sample_image as sample_image
from ._samples import submission_body as submission_body
from ._server import EmulatorThread as EmulatorThread
from ._server import RunningEmulator as RunningEmulator
from ._server import run_emulator as run_emulator
from ._server import run_emulator_in_thread as run_emulator_in_thread
from ._server import serve_asgi as serve_asgi
from ._state import CallbackRecord as CallbackRecord
from ._state import EmulatorStats as EmulatorStats
from ._state import SecondStats as SecondStats
from ._urls import callback_url_problem as callback_url_problem

__all__ = [
    "API_HEADERS",
    "CallbackReceiver",
    "CallbackRecord",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorStats",
    "EmulatorThread",
    "Faults",
    "Outcome",
    "RateWindow",
    "ReceivedCallback",
    "RunningEmulator",
    "SecondStats",
    "callback_url_problem",
    "create_app",
    "parse_rate_limit",
    "run_callback_receiver",
    "run_emulator",
    "run_emulator_in_thread",
    "sample_image",
    "serve_asgi",
    "submission_body",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith(__name__ + "."):
        _obj.__module__ = __name__
del _name, _obj
