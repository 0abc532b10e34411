"""MkDocs hooks of the documentation site (``hooks:`` in ``mkdocs.yml``; not part of the package).

* The API reference is generated from the public names: a page containing ``<!-- public-api: MODULE -->``
  gets one ``::: MODULE.NAME`` entry per name of ``MODULE.__all__`` (read from the imported module, so lazily
  imported names are included), grouped by the private module that defines them. A name added to ``__all__``
  therefore appears in the reference without editing the docs. Names a module merely re-exports from
  ``netverify_async`` are listed as links to their entry there.
* ``benchmarks/README.md`` is included into ``docs/benchmarks.md`` with ``pymdownx.snippets``; the plot it
  shows is copied into the site next to it, so its relative image link works on the site as on GitHub.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import griffe
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_API = re.compile(r"^<!-- public-api: (?P<module>[\w.]+) -->$", re.MULTILINE)
# Files the benchmarks page refers to by a path relative to benchmarks/README.md.
BENCHMARK_ASSETS = ("benchmarks/ratelimit_adaptive.png",)

#: Section title for the private module (or public submodule) that defines a name; first match wins.
SECTIONS = (
    ("netverify_async._client", "Client"),
    ("netverify_async._config", "Client"),
    ("netverify_async._models", "Requests and receipts"),
    ("netverify_async._parts", "Requests and receipts"),
    ("netverify_async._enums", "Requests and receipts"),
    ("netverify_async._retry", "Retries"),
    ("netverify_async._errors", "Errors and warnings"),
    ("netverify_async._preflight", "Image preflight"),
    ("netverify_async._batch", "Batches"),
    ("netverify_async._outcomes", "Batches"),
    ("netverify_async._pipeline", "Batches"),
    ("netverify_async._journal", "Journal"),
    ("netverify_async._ratelimit", "Rate limiting"),
    ("netverify_async._events", "Events (observability hooks)"),
    ("netverify_async._worker", "Distributed workers"),
    ("netverify_async._retrieval", "Retrieval results"),
    ("netverify_async._results", "Retrieval and callback results"),
    ("netverify_async._origin", "Callback origin"),
    ("netverify_async.callbacks", "Callbacks"),
    ("netverify_async.fastapi", "FastAPI integration"),
    ("netverify_async.redis", "Shared rate limiter (Redis)"),
    ("netverify_async._pgjournal", "Journal in PostgreSQL"),
    ("netverify_async.emulator._outcomes", "Configuration and faults"),
    ("netverify_async.emulator._callbacks", "Callback receiver"),
    ("netverify_async.emulator._server", "Running the emulator"),
    ("netverify_async.emulator._config", "Configuration and faults"),
    ("netverify_async.emulator._state", "Statistics"),
    ("netverify_async.emulator._receiver", "Callback receiver"),
    ("netverify_async.emulator._samples", "Helpers for plain HTTP tests"),
    ("netverify_async.emulator._app", "The ASGI application"),
)

_package: griffe.Module | None = None


def _griffe_package() -> griffe.Module:
    global _package
    if _package is None:
        loader = griffe.GriffeLoader(search_paths=[str(ROOT)])
        package = loader.load("netverify_async")
        loader.resolve_aliases(implicit=False, external=False)
        assert isinstance(package, griffe.Module)
        _package = package
    return _package


def _defining_module(module: str, name: str) -> str:
    package = _griffe_package()
    node: Any = package if module == "netverify_async" else package[module.split(".", 1)[1]]
    try:
        member = node[name]
        path = member.final_target.path if member.is_alias else member.path
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return module
    return str(path).rsplit(".", 1)[0]


def _section(defining: str) -> str:
    for prefix, title in SECTIONS:
        if defining == prefix or defining.startswith(prefix + "_") or defining.startswith(prefix + "."):
            return title
    return "Other"


def public_api_markdown(module_name: str) -> str:
    """The Markdown that documents every name of ``module_name.__all__``."""
    module = importlib.import_module(module_name)
    core = importlib.import_module("netverify_async")
    names = [name for name in module.__all__ if not name.startswith("__")]
    sections: dict[str, list[str]] = {}
    reexported: list[str] = []
    for name in names:
        if module is not core and name in core.__all__ and getattr(core, name) is getattr(module, name):
            reexported.append(name)
            continue
        sections.setdefault(_section(_defining_module(module_name, name)), []).append(name)
    order = [title for _, title in SECTIONS] + ["Other"]
    out: list[str] = []
    for title in sorted(sections, key=order.index):
        out.append(f"## {title}\n")
        for name in sorted(sections[title], key=str.lower):
            out.append(f"::: {module_name}.{name}\n")
    if reexported:
        out.append("## Re-exported from `netverify_async`\n")
        out.extend(f"- [`{name}`][netverify_async.{name}]" for name in reexported)
        out.append("")
    return "\n".join(out)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    return PUBLIC_API.sub(lambda match: public_api_markdown(match["module"]), markdown)


def on_files(files: Files, config: Any) -> Files:
    for asset in BENCHMARK_ASSETS:
        files.append(File.generated(config, asset, abs_src_path=str(ROOT / asset)))
    return files
