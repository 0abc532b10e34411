"""Image downloads: the sinks an image answer is streamed into (a file written whole or not at all, or an async
iterator for the caller), and the task that runs a streamed download while the caller reads it."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from ._enums import ImageRole
from ._errors import ConfigurationError, ResponseError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["FileSink", "ImageStream", "ImageStreamContext", "StreamSink", "image_classifier"]

#: The classifiers of the document and face images (liveness images are ``liveness/N``).
_IMAGE_ROLES = frozenset(role.value for role in ImageRole)


def image_classifier(value: str | int) -> str:
    """``front``, ``back``, ``face`` or ``liveness/N`` from what a caller may pass."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigurationError("classifier: a liveness image number starts at 1")
        return f"liveness/{value}"
    if isinstance(value, str):
        name = str(value.value if hasattr(value, "value") else value).strip().lower()
        if name in _IMAGE_ROLES:
            return name
        number = name[len("liveness/") :] if name.startswith("liveness/") else ""
        if number.isascii() and number.isdigit() and 0 < int(number) < 1_000_000:
            return f"liveness/{int(number)}"
    raise ConfigurationError("classifier: must be front, back, face, liveness/N or a liveness number N")


class FileSink:
    """Writes a download into a temporary file beside its destination; :meth:`commit` renames it there."""

    replayable = True

    def __init__(self, destination: Path) -> None:
        self._destination = destination
        self._file: Any = None
        self._temp: str | None = None
        self.size = 0
        self.content_type: str | None = None

    async def start(self, content_type: str | None, content_length: int | None) -> None:
        self.content_type = content_type
        self.size = 0
        if self._file is None:
            directory = self._destination.parent
            prefix = f".{self._destination.name}."
            fd, self._temp = await anyio.to_thread.run_sync(
                lambda: tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".part")
            )
            self._file = anyio.wrap_file(os.fdopen(fd, "wb"))
        else:  # another attempt: start the file again
            await self._file.seek(0)
            await self._file.truncate()

    async def write(self, chunk: bytes) -> None:
        await self._file.write(chunk)
        self.size += len(chunk)

    async def commit(self) -> None:
        if self._file is None or self._temp is None:  # pragma: no cover - a 2xx always starts the sink
            raise ResponseError("downloadImage: the answer had no body", operation="downloadImage")
        file, temp = self._file, self._temp
        self._file = None
        await file.aclose()
        await anyio.to_thread.run_sync(os.replace, temp, self._destination)
        self._temp = None

    async def discard(self) -> None:
        file, temp = self._file, self._temp
        self._file = self._temp = None
        if file is not None:
            with contextlib.suppress(OSError):
                await file.aclose()
        if temp is not None:
            with contextlib.suppress(OSError):
                os.unlink(temp)


class ImageStream:
    """The chunks of an image being downloaded (:meth:`NetverifyClient.stream_image`), as an async iterator.

    ``content_type`` (``image/jpeg`` or ``image/png``) and ``declared_size`` (the ``Content-Length``, or None)
    are known once the block is entered; ``size`` counts the bytes handed out so far.
    """

    def __init__(
        self, receive: MemoryObjectReceiveStream[bytes], *, scan_reference: str, classifier: str
    ) -> None:
        self._receive = receive
        self.scan_reference = scan_reference
        self.classifier = classifier
        self.content_type: str | None = None
        self.declared_size: int | None = None
        self.size = 0
        self._error: BaseException | None = None
        self._started = False
        self._ready = anyio.Event()

    def __repr__(self) -> str:
        return (
            f"ImageStream(scan_reference={self.scan_reference!r}, classifier={self.classifier!r}, "
            f"content_type={self.content_type!r}, size={self.size})"
        )

    def __aiter__(self) -> ImageStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if self._error is not None:
                raise self._error from None
            raise StopAsyncIteration from None
        self.size += len(chunk)
        return chunk

    async def read(self) -> bytes:
        """The rest of the image, whole."""
        return b"".join([chunk async for chunk in self])


class StreamSink:
    """Hands a download's chunks to an :class:`ImageStream` (not replayable: they cannot be taken back)."""

    replayable = False

    def __init__(self, send: MemoryObjectSendStream[bytes], stream: ImageStream) -> None:
        self._send = send
        self._stream = stream

    async def start(self, content_type: str | None, content_length: int | None) -> None:
        self._stream.content_type = content_type
        self._stream.declared_size = content_length
        self._stream._started = True
        self._stream._ready.set()

    async def write(self, chunk: bytes) -> None:
        await self._send.send(chunk)


class ImageStreamContext:
    """Runs a streamed download in a task of its own while the caller reads the :class:`ImageStream`.

    The download task never raises: its failure is kept and raised to the reader (on entering, when nothing
    came yet; else from the iteration), so neither loop wraps it in an exception group.
    """

    def __init__(
        self, download: Callable[[], Awaitable[object]], send: MemoryObjectSendStream[bytes], stream: ImageStream
    ) -> None:
        self._download_with_retries = download
        self._send = send
        self._stream = stream
        self._tasks: TaskGroup | None = None

    async def _download(self) -> None:
        try:
            await self._download_with_retries()
        except Exception as exc:
            self._stream._error = exc
        finally:
            self._send.close()
            self._stream._ready.set()

    async def __aenter__(self) -> ImageStream:
        tasks = anyio.create_task_group()
        await tasks.__aenter__()
        self._tasks = tasks
        tasks.start_soon(self._download)
        try:
            await self._stream._ready.wait()
        except BaseException:
            await self._close()
            raise
        if not self._stream._started and self._stream._error is not None:
            await self._close()
            raise self._stream._error
        return self._stream

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close()

    async def _close(self) -> None:
        tasks, self._tasks = self._tasks, None
        if tasks is not None:
            tasks.cancel_scope.cancel()
            await tasks.__aexit__(None, None, None)
        self._stream._receive.close()
