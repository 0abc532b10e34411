"""Griffe extensions for the documentation site (``extensions:`` in ``mkdocs.yml``; not part of the package).

``ReSTRoles``: the library's docstrings are reST-flavoured Markdown.

They use ``double backticks`` (already code in Markdown) and Sphinx roles such as :class:`~netverify_async.Batch`
and ``::`` before an indented example. This extension rewrites, in the docstrings only, for rendering:

* a role whose target is a public name that the reference documents becomes a cross-reference
  (``[`Batch`][netverify_async.Batch]``); any other role (a private helper, a module) becomes plain code;
* a paragraph ending in ``::`` ends in ``:`` (the indented block after it is already a Markdown code block).

The library keeps its docstrings as they are; nothing here changes the package.

``AttrsSignatures``: signatures for attrs classes; ``AttributeComments``: ``#:`` comments as docstrings (below).
"""

from __future__ import annotations

import enum
import importlib
import inspect
import re
from typing import Any

import attrs
import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|exc|data|obj|const):`(?P<target>[^`]+)`")
LITERAL_BLOCK_INTRO = re.compile(r"(?<=\S)::[ \t]*$", re.MULTILINE)
BARE_LITERAL_INTRO = re.compile(r"^([ \t]*)::[ \t]*$", re.MULTILINE)
DOCUMENTED_MODULES = (
    "netverify_async",
    "netverify_async.callbacks",
    "netverify_async.redis",
    "netverify_async.fastapi",
    "netverify_async.emulator",
)


class ReSTRoles(griffe.Extension):
    def __init__(self) -> None:
        self.public: dict[str, set[str]] = {}
        for name in DOCUMENTED_MODULES:
            try:
                self.public[name] = set(importlib.import_module(name).__all__)
            except ImportError:  # an extra that is not installed: no links into that module
                self.public[name] = set()
        self.package: griffe.Module | None = None

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "netverify_async":
            return
        self.package = pkg
        for obj in _walk(pkg):
            if obj.docstring is not None:
                obj.docstring.value = self.rewrite(obj.docstring.value, obj)

    def rewrite(self, text: str, obj: griffe.Object) -> str:
        text = _simple_tables_to_markdown(text)
        text = ROLE.sub(lambda match: self._role(match["target"], obj), text)
        text = BARE_LITERAL_INTRO.sub("", text)
        return LITERAL_BLOCK_INTRO.sub(":", text)

    def _role(self, target: str, obj: griffe.Object) -> str:
        short = target.startswith("~")
        target = target.lstrip("~")
        shown = target.rsplit(".", 1)[-1] if short else target.lstrip(".")
        path = self._documented_path(target, obj)
        return f"[`{shown}`][{path}]" if path else f"`{shown}`"

    def _documented_path(self, target: str, obj: griffe.Object) -> str | None:
        """The reference's identifier for ``target`` if the reference renders it, else None."""
        if target.startswith("."):
            return None  # relative to a private module
        candidates = [target] if target.startswith("netverify_async") else []
        candidates.append(f"netverify_async.{target}")
        module = obj.module.path
        if module in self.public:
            candidates.append(f"{module}.{target}")
        for path in candidates:
            for module_name, names in self.public.items():
                rest = path[len(module_name) + 1 :] if path.startswith(module_name + ".") else None
                if not rest:
                    continue
                head, _, member = rest.partition(".")
                if head not in names:
                    continue
                if module_name != "netverify_async" and head in self.public["netverify_async"]:
                    module_name = "netverify_async"  # a re-export: documented once, in the core reference
                    path = f"netverify_async.{rest}"
                if not member or self._renders(path):
                    return path
                return f"{module_name}.{head}"  # a member without its own entry: link to its owner
        return None

    def _renders(self, path: str) -> bool:
        if self.package is None:
            return False
        try:
            found = self.package[path.split(".", 1)[1]]
            return bool(found.docstring) and not found.name.startswith("_")
        except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
            return False


SIMPLE_TABLE_BORDER = re.compile(r"^( *)(=+)( +=+)+ *$")


def _simple_tables_to_markdown(text: str) -> str:
    """reST simple tables (``===  ===`` borders, a header row, rows whose first cell may be empty to continue the
    row above) as Markdown tables."""
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        border = SIMPLE_TABLE_BORDER.match(lines[index])
        if not border:
            out.append(lines[index])
            index += 1
            continue
        spans = [(m.start(), m.end()) for m in re.finditer(r"=+", lines[index])]
        rows: list[list[str]] = []
        borders = 1
        index += 1
        while index < len(lines) and borders < 3:
            line = lines[index]
            index += 1
            if SIMPLE_TABLE_BORDER.match(line):
                borders += 1
                continue
            cells = [
                line[start : (spans[n + 1][0] if n + 1 < len(spans) else len(line))].strip()
                for n, (start, _) in enumerate(spans)
            ]
            if rows and not cells[0] and borders == 2:
                rows[-1] = [f"{old} {new}".strip() for old, new in zip(rows[-1], cells, strict=True)]
            elif any(cells):
                rows.append(cells)
        if not rows:
            continue
        out.append("")
        out.append("| " + " | ".join(rows[0]) + " |")
        out.append("|" + "---|" * len(spans))
        out.extend("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows[1:])
        out.append("")
    return "\n".join(out)


def _walk(obj: griffe.Object) -> Any:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)  # type: ignore[arg-type]


class AttrsSignatures(griffe.Extension):
    """Signatures for attrs classes, whose ``__init__`` attrs writes at run time (static analysis sees none).

    The parameters are read from the imported class with :func:`inspect.signature`, so the reference shows
    what a caller really passes (``NetverifyRequest(merchant_id_scan_reference, frontside_image, ...)``).
    """

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "netverify_async":
            return
        for obj in _walk(pkg):
            if obj.is_class and "__init__" not in obj.members:
                runtime = _runtime_object(obj)
                if runtime is not None and attrs.has(runtime):
                    obj.set_member("__init__", _init_from(runtime, obj))


def _runtime_object(obj: griffe.Object) -> Any:
    try:
        found: Any = importlib.import_module(obj.module.path)
    except ImportError:
        return None
    for part in obj.path[len(obj.module.path) + 1 :].split("."):
        found = getattr(found, part, None)
        if found is None:
            return None
    return found


_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: griffe.ParameterKind.positional_only,
    inspect.Parameter.POSITIONAL_OR_KEYWORD: griffe.ParameterKind.positional_or_keyword,
    inspect.Parameter.VAR_POSITIONAL: griffe.ParameterKind.var_positional,
    inspect.Parameter.KEYWORD_ONLY: griffe.ParameterKind.keyword_only,
    inspect.Parameter.VAR_KEYWORD: griffe.ParameterKind.var_keyword,
}


def _init_from(cls: type, owner: griffe.Object) -> griffe.Function:
    parameters = [griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)]
    for parameter in inspect.signature(cls).parameters.values():
        annotation = parameter.annotation
        if annotation is inspect.Parameter.empty:
            annotation = None
        elif not isinstance(annotation, str):
            annotation = inspect.formatannotation(annotation)
        default = None
        if parameter.default is not inspect.Parameter.empty:
            default = _default_repr(parameter.default)
        parameters.append(
            griffe.Parameter(
                parameter.name,
                annotation=annotation,
                kind=_KINDS[parameter.kind],
                default=default,
            )
        )
    return griffe.Function("__init__", parameters=griffe.Parameters(*parameters), parent=owner)  # type: ignore[arg-type]


def _default_repr(value: Any) -> str:
    if isinstance(value, attrs.Factory):  # type: ignore[arg-type]
        factory = value.factory  # type: ignore[attr-defined]
        return f"{getattr(factory, '__name__', 'factory')}()"
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


class AttributeComments(griffe.Extension):
    """Docstrings for module attributes documented Sphinx-style, with ``#:`` comments on the lines above them
    (``CLIENT_STATE_ATTRIBUTE``, ``NetverifyClientDep``, ``API_HEADERS``...)."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name != "netverify_async":
            return
        for obj in _walk(pkg):
            if obj.is_attribute and obj.docstring is None and obj.lineno:
                comment: list[str] = []
                lines = obj.module.lines
                index = obj.lineno - 2
                while index >= 0 and lines[index].strip().startswith("#:"):
                    comment.insert(0, lines[index].strip()[2:].strip())
                    index -= 1
                if comment:
                    obj.docstring = griffe.Docstring(" ".join(comment), lineno=obj.lineno, parent=obj)
