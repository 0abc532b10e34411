"""Every Python code block of README.md and docs/ runs here, so the documentation cannot drift from the code.

The blocks are found and run with Sybil (``sybil.parsers.markdown``). Blocks of one page share a namespace and
run in page order, as a reader would run them; one test per block. A block with a top-level ``await`` runs on
an asyncio event loop that lives as long as the page (examples read as the body of an ``async def``); other
blocks run as plain code, so a complete program that calls ``anyio.run(main)`` runs as written.

Each page gets what a reader trying the examples would have:

* a fresh emulator (``run_emulator``) on a loopback port, and the environment variables that point
  ``NetverifyClient.from_env()`` at it (``NETVERIFY_BASE_URL``, the emulator's credentials, a User-Agent);
* a fresh working directory holding sample images: ``passport.jpg``, ``front.jpg``, ``back.jpg``,
  ``selfie.jpg`` (made with ``netverify_async.emulator.sample_image``).

Nothing else is injected: a page that uses ``client`` builds it in a visible block. Blocks that cannot run here
(shell sessions are not Python; a few need production credentials or a process of their own) are preceded by
``<!-- skip: next "reason" -->``; the reason shows in pytest's summary (``-ra``).
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import os
import re
import sys
import unittest
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("sybil", reason="the doc-test runner is in the 'docs' extra")

from anyio.from_thread import BlockingPortal, start_blocking_portal
from sybil import Example, Sybil
from sybil.evaluators.python import pad
from sybil.parsers.markdown import CodeBlockParser, SkipParser

ROOT = Path(__file__).resolve().parent.parent
#: The pages whose Python blocks are run: the README, every page of the site, and what the site includes.
PAGES = sorted(
    [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *(ROOT / "docs").rglob("*.md")],
    key=lambda path: path.relative_to(ROOT).as_posix(),
)
USER_AGENT = "Example Corp DocsExamples/1.0"
SAMPLE_FILES = ("passport.jpg", "front.jpg", "back.jpg", "selfie.jpg")
#: Fence languages that look like Python but would not be run: use ``python`` (run) or ``text``/``console``.
UNTESTED_PYTHON_FENCE = re.compile(r"^\s*(```|~~~)\s*(py|python3|pycon|ipython|py3)\b", re.MULTILINE)
RUNNER_KEY = "__docs_runner__"
#: A block that only includes a file of the repository, e.g. ``--8<-- "examples/fastapi_app.py"``.
SNIPPET = re.compile(r'--8<-- "(?P<path>[^"]+)"')


# ---------------------------------------------------------------------------------------------------------
# Running a block


class PageEvaluator:
    """Runs one Python block: plain code with ``exec``; code with a top-level ``await`` on the page's loop."""

    def __call__(self, example: Example) -> None:
        __tracebackhide__ = True
        included = SNIPPET.fullmatch(str(example.parsed).strip())
        if included:  # the site shows the file itself (pymdownx.snippets): run the file
            path = ROOT / included["path"]
            code = compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
        else:
            source = pad(example.parsed, example.line + example.parsed.line_offset)
            code = compile(source, example.path, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        namespace = example.namespace
        if code.co_flags & inspect.CO_COROUTINE:  # a top-level await
            runner: PageRunner = namespace[RUNNER_KEY]
            runner.run_async(code, namespace)
        else:
            exec(code, namespace)
        namespace.pop("__builtins__", None)


SYBIL = Sybil(parsers=[CodeBlockParser(language="python", evaluator=PageEvaluator()), SkipParser()])


@dataclass
class PageRunner:
    """What one page's examples run in: the emulator, the environment, a working directory and a loop."""

    page: Path
    tmp_dir: Path
    stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    portal: BlockingPortal | None = None
    examples: list[Example] = field(default_factory=list)
    #: index of the next region to evaluate, and the line of a block that failed (later ones depend on it)
    position: int = 0
    failed_at: int | None = None

    def start(self) -> None:
        from netverify_async.emulator import run_emulator, sample_image

        document = SYBIL.parse(self.page)
        self.examples = list(document)
        document.namespace.update({"__name__": "__main__", RUNNER_KEY: self})
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        for name in SAMPLE_FILES:
            (self.tmp_dir / name).write_bytes(sample_image(1200, 850))
        self.portal = self.stack.enter_context(start_blocking_portal("asyncio"))
        emulator = self.stack.enter_context(
            self.portal.wrap_async_context_manager(run_emulator(processing_delay=0.2))
        )
        self.stack.enter_context(_environment(emulator.base_url, emulator.api_token, emulator.api_secret))
        self.stack.enter_context(_chdir(self.tmp_dir))
        self.stack.callback(self._close_clients, document.namespace)

    def run_async(self, code: Any, namespace: dict[str, Any]) -> None:
        assert self.portal is not None

        async def block() -> None:
            await eval(code, namespace)

        self.portal.call(block)

    def run_through(self, example: Example) -> None:
        """Evaluate the page's regions up to and including ``example``, in page order."""
        if self.failed_at is not None:
            pytest.fail(f"an earlier block of this page (line {self.failed_at}) failed, and this one may use its names")
        index = self.examples.index(example)
        while self.position <= index:
            current = self.examples[self.position]
            self.position += 1
            try:
                current.evaluate()
            except unittest.SkipTest as exc:
                if current is example:
                    pytest.skip(str(exc))
            except BaseException:
                self.failed_at = current.line
                raise

    def _close_clients(self, namespace: dict[str, Any]) -> None:
        from netverify_async import NetverifyClient

        assert self.portal is not None
        for value in list(namespace.values()):
            if isinstance(value, NetverifyClient):
                self.portal.call(value.aclose)

    def close(self) -> None:
        self.stack.close()


@contextlib.contextmanager
def _environment(base_url: str, token: str, secret: str) -> Iterator[None]:
    values = {
        "NETVERIFY_BASE_URL": base_url,
        "NETVERIFY_API_TOKEN": token,
        "NETVERIFY_API_SECRET": secret,
        "NETVERIFY_USER_AGENT": USER_AGENT,
    }
    saved = {name: os.environ.get(name) for name in (*values, "NETVERIFY_REGION")}
    os.environ.pop("NETVERIFY_REGION", None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def _chdir(path: Path) -> Iterator[None]:  # contextlib.chdir needs Python 3.11
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


# ---------------------------------------------------------------------------------------------------------
# One test per Python block


def _python_blocks(page: Path) -> list[tuple[Path, int]]:
    return [(page, example.line) for example in SYBIL.parse(page) if _is_python_block(example)]


def _is_python_block(example: Example) -> bool:
    return isinstance(example.region.evaluator, PageEvaluator)


BLOCKS = [block for page in PAGES for block in _python_blocks(page)]


@pytest.fixture(scope="module")
def runners(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[Path, PageRunner]]:
    started: dict[Path, PageRunner] = {}
    yield started
    for runner in started.values():
        runner.close()


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("page", "line"), BLOCKS, ids=[f"{page.relative_to(ROOT).as_posix()}:{line}" for page, line in BLOCKS]
)
def test_code_block_runs(
    page: Path, line: int, runners: dict[Path, PageRunner], tmp_path_factory: pytest.TempPathFactory
) -> None:
    runner = runners.get(page)
    if runner is None:
        for other in list(runners.values()):  # one page at a time: its emulator and loop end with it
            other.close()
        runners.clear()
        runner = runners[page] = PageRunner(page, tmp_path_factory.mktemp(page.stem))
        runner.start()
    [example] = [example for example in runner.examples if example.line == line and _is_python_block(example)]
    runner.run_through(example)


# ---------------------------------------------------------------------------------------------------------
# The documents themselves


def test_every_page_with_python_is_covered() -> None:
    pages_with_blocks = {page for page, _ in BLOCKS}
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        if re.search(r"^\s*```python\b", text, re.MULTILINE):
            assert page in pages_with_blocks, page


@pytest.mark.parametrize("page", PAGES, ids=[page.relative_to(ROOT).as_posix() for page in PAGES])
def test_python_blocks_are_marked_python(page: Path) -> None:
    """A block tagged ``py`` or ``pycon`` would silently escape the tests: tag Python ``python``."""
    found = UNTESTED_PYTHON_FENCE.findall(page.read_text(encoding="utf-8"))
    assert not found, f"{page.name}: use ```python for Python blocks (they are run) or ```text"


def test_readme_stays_short() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= 26_000, f"README.md is {size} bytes; move detail into docs/ (the README's budget is ~25 KB)"


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def test_readme_links_resolve() -> None:
    """Every ``#anchor`` of the README names one of its headings, and every relative link names a file."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    anchors: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose, re.MULTILINE):
        anchor = _anchor(heading)
        anchors[anchor] = anchors.get(anchor, 0) + 1
    assert all(count == 1 for count in anchors.values()), f"headings that share an anchor: {anchors}"
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        if path:
            assert (ROOT / path).exists(), f"README links to {path}, which does not exist"
            if anchor and path.endswith(".md"):
                headings = re.findall(r"^#{1,6} (.+)$", (ROOT / path).read_text(encoding="utf-8"), re.MULTILINE)
                assert anchor in {_anchor(h) for h in headings}, f"README links to {target}: no such heading"
        else:
            assert anchor in anchors, f"README links to #{anchor}: no such heading"


def test_the_emulator_guides_pytest_files_pass_under_pytest(tmp_path: Path) -> None:
    """The guide's ``# conftest.py`` and ``# test_onboarding.py`` blocks are a test suite: run it as one."""
    import subprocess

    files = {}
    for example in SYBIL.parse(ROOT / "docs" / "emulator.md"):
        if _is_python_block(example):
            first_line = str(example.parsed).lstrip().splitlines()[0]
            if re.fullmatch(r"# (conftest|test_\w+)\.py", first_line):
                files[first_line[2:]] = str(example.parsed)
    assert set(files) == {"conftest.py", "test_onboarding.py"}, sorted(files)
    for name, source in files.items():
        (tmp_path / name).write_text(source, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "anyio", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout, result.stdout
