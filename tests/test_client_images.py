"""Image retrieval through the client: listing, downloading to a file and to an async iterator, the size cap,
and the promise that credentials go only to the configured host (a foreign image URL is refused before any
connection)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest
from _support import SleepRecorder, client_at, emulator_client

from netverify_async import (
    ConfigurationError,
    FailureKind,
    ForeignImageURLError,
    Image,
    ImageTooLargeError,
    NetverifyRequest,
    NotFoundError,
    ReadError,
    ResponseError,
    ScanImage,
)
from netverify_async.emulator import sample_image

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]

FRONT = sample_image(1200, 850)
BACK = sample_image(1000, 700, "PNG")


def _request(reference: str) -> NetverifyRequest:
    return NetverifyRequest(
        reference,
        Image.from_bytes(FRONT),
        "AUT",
        "ID_CARD",
        backside_image=Image.from_bytes(BACK, mime_type="image/png"),
    )


# ---------------------------------------------------------------------------------------------------------
# A raw loopback server: counts connections, answers each request with a scripted handler


class RawServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"
        self.connections = 0
        self.heads: list[bytes] = []


Handler = Callable[[RawServer, anyio.abc.SocketStream, int], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler | None = None) -> AsyncIterator[RawServer]:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    server = RawServer(listener.extra(anyio.abc.SocketAttribute.local_port))

    async def serve(stream: anyio.abc.SocketStream) -> None:
        server.connections += 1
        async with stream:
            head = b""
            try:
                while b"\r\n\r\n" not in head:
                    head += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                return
            server.heads.append(head)
            if handler is not None:
                try:
                    await handler(server, stream, len(server.heads))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass

    async with listener, anyio.create_task_group() as tasks:
        tasks.start_soon(listener.serve, serve)
        try:
            yield server
        finally:
            tasks.cancel_scope.cancel()


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _image_path(reference: str = "scan-1", classifier: str = "front") -> str:
    return f"/api/netverify/v2/scans/{reference}/images/{classifier}"


def _files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


# ---------------------------------------------------------------------------------------------------------
# Against the emulator


async def test_list_then_download_every_image_to_files(emulator: Any, tmp_path: Path) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(_request("img-1"))
        listed = await client.list_images(receipt.scan_reference)
        assert {image.classifier for image in listed.images} == {"front", "back"}
        results = {}
        for image in listed.images:
            assert isinstance(image, ScanImage)
            results[image.classifier] = await client.download_image(image, to=tmp_path / f"{image.classifier}.img")
        by_reference = await client.download_image(receipt.scan_reference, "back", to=tmp_path / "again.png")
        by_url = await client.download_image(listed.images[0].href or "", to=tmp_path / "by-url.img")
    assert (tmp_path / "front.img").read_bytes() == FRONT
    assert (tmp_path / "back.img").read_bytes() == BACK
    assert (tmp_path / "again.png").read_bytes() == BACK
    assert results["front"].content_type == "image/jpeg" and results["front"].size == len(FRONT)
    assert results["back"].content_type == "image/png"
    assert by_reference.classifier == "back" and by_reference.scan_reference == receipt.scan_reference
    assert by_url.classifier == listed.images[0].classifier
    # renamed into place: no temporary file is left beside the images; owner-only permissions
    assert _files(tmp_path) == ["again.png", "back.img", "by-url.img", "front.img"]
    assert (tmp_path / "front.img").stat().st_mode & 0o077 == 0
    assert "<redacted>" in repr(results["front"])


async def test_stream_an_image_as_an_async_iterator(emulator: Any) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(_request("img-2"))
        chunks = []
        async with client.stream_image(receipt.scan_reference, "front") as image:
            assert image.content_type == "image/jpeg"
            assert image.declared_size == len(FRONT)
            async for chunk in image:
                chunks.append(chunk)
        assert b"".join(chunks) == FRONT and image.size == len(FRONT)
        async with client.stream_image(receipt.scan_reference, "back") as image:
            assert await image.read() == BACK


async def test_the_size_cap_refuses_a_declared_size_before_writing_anything(emulator: Any, tmp_path: Path) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(_request("img-3"))
        with pytest.raises(ImageTooLargeError) as info:
            await client.download_image(receipt.scan_reference, "front", to=tmp_path / "f.jpg", max_bytes=1000)
        with pytest.raises(ImageTooLargeError):
            async with client.stream_image(receipt.scan_reference, "front", max_bytes=1000):
                pytest.fail("entered a stream over the cap")
    error = info.value
    assert error.kind is FailureKind.PERMANENT and not isinstance(error, ReadError)
    assert error.max_bytes == 1000 and error.declared_size == len(FRONT)
    assert _files(tmp_path) == []


async def test_missing_image_and_bad_classifier(emulator: Any, tmp_path: Path) -> None:
    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(_request("img-4"))
        with pytest.raises(NotFoundError):
            await client.download_image(receipt.scan_reference, "face", to=tmp_path / "face.jpg")
        with pytest.raises(NotFoundError):
            async with client.stream_image(receipt.scan_reference, "face"):
                pytest.fail("entered a stream of a missing image")
        before = emulator.stats.requests
        for bad in ("selfie", 0, "liveness/x", "../data"):
            with pytest.raises(ConfigurationError, match="classifier"):
                await client.download_image(receipt.scan_reference, bad, to=tmp_path / "x")
        with pytest.raises(ConfigurationError, match="classifier"):
            await client.download_image(receipt.scan_reference, to=tmp_path / "x")
    assert emulator.stats.requests == before
    assert _files(tmp_path) == []


# ---------------------------------------------------------------------------------------------------------
# Credentials go only to the configured host


async def test_foreign_image_urls_are_refused_before_any_connection(emulator: Any, tmp_path: Path) -> None:
    async with raw_server() as listener:
        port = emulator.base_url.rsplit(":", 1)[1]
        path = _image_path()
        foreign = [
            f"http://127.0.0.1:{listener.port}{path}",  # another port of the same host
            f"http://localhost:{listener.port}{path}",  # another host name
            f"http://localhost:{port}{path}",  # same port, another host name
            f"https://127.0.0.1:{port}{path}",  # another scheme
            f"http://user:pw@127.0.0.1:{listener.port}{path}",  # credentials in the URL
            f"http://127.0.0.1:{port}@127.0.0.1:{listener.port}{path}",  # the host after the '@'
            f"http://127.0.0.1:{port}{path}?next=http://127.0.0.1:{listener.port}/",  # a query
            f"http://127.0.0.1:{port}/api/netverify/v2/scans/scan-1/data",  # not an image
            f"http://127.0.0.1:{port}/api/netverify/v2/scans/a%2Fb/images/front",  # an encoded slash
            "not a url at all://",
        ]
        async with emulator_client(emulator) as client:
            for url in foreign:
                with pytest.raises(ForeignImageURLError) as info:
                    await client.download_image(url, to=tmp_path / "stolen.jpg")
                assert info.value.kind is FailureKind.PERMANENT
                assert str(listener.port) not in str(info.value) and "user" not in str(info.value)
                with pytest.raises(ForeignImageURLError):
                    async with client.stream_image(url):
                        pytest.fail("entered a stream of a foreign URL")
                with pytest.raises(ForeignImageURLError):
                    await client.download_image(ScanImage(classifier="front", href=url), to=tmp_path / "s.jpg")
        assert listener.connections == 0
        assert emulator.stats.requests == 0
        assert _files(tmp_path) == []
        # the listener was listening all along: a connection to it is counted
        async with await anyio.connect_tcp("127.0.0.1", listener.port):
            with anyio.fail_after(5):
                while listener.connections == 0:
                    await anyio.sleep(0.01)
        assert listener.connections == 1


async def test_a_url_of_the_configured_host_is_fetched_with_its_path_rebuilt(tmp_path: Path) -> None:
    async def image(server: RawServer, stream: anyio.abc.SocketStream, number: int) -> None:
        await stream.send(_head(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(FRONT))}) + FRONT)

    async with raw_server(image) as server, client_at(server.base_url) as client:
        result = await client.download_image(f"{server.base_url}{_image_path('s-9', 'liveness/3')}", to=tmp_path / "l")
        result_number = await client.download_image("s-9", 4, to=tmp_path / "n")
    assert result.classifier == "liveness/3" and result_number.classifier == "liveness/4"
    assert (tmp_path / "l").read_bytes() == FRONT
    request_lines = [head.split(b"\r\n", 1)[0] for head in server.heads]
    assert request_lines == [
        b"GET /api/netverify/v2/scans/s-9/images/liveness/3 HTTP/1.1",
        b"GET /api/netverify/v2/scans/s-9/images/liveness/4 HTTP/1.1",
    ]
    assert all(b"accept: image/jpeg, image/png" in head.lower() for head in server.heads)


# ---------------------------------------------------------------------------------------------------------
# Misbehaving servers


async def _chunked_flood(server: RawServer, stream: anyio.abc.SocketStream, number: int) -> None:
    """200 image/jpeg without Content-Length, then chunks of 16 KiB for as long as the client reads."""
    await stream.send(_head(200, {"Content-Type": "image/jpeg", "Transfer-Encoding": "chunked"}))
    chunk = b"\xff" * 16384
    for _ in range(64):
        await stream.send(b"4000\r\n" + chunk + b"\r\n")
    await stream.send(b"0\r\n\r\n")


async def test_the_size_cap_cuts_an_undeclared_flood_and_leaves_no_file(tmp_path: Path) -> None:
    async with raw_server(_chunked_flood) as server, client_at(server.base_url) as client:
        with pytest.raises(ImageTooLargeError) as info:
            await client.download_image("s-1", "front", to=tmp_path / "f.jpg", max_bytes=100_000)
        assert info.value.declared_size is None and info.value.kind is FailureKind.PERMANENT
        received = 0
        with pytest.raises(ImageTooLargeError):
            async with client.stream_image("s-1", "front", max_bytes=100_000) as image:
                async for chunk in image:
                    received += len(chunk)
        assert 0 < received <= 100_000
    assert len(server.heads) == 2  # not retried
    assert _files(tmp_path) == []


async def test_an_answer_that_is_not_an_image_is_refused(tmp_path: Path) -> None:
    async def json_page(server: RawServer, stream: anyio.abc.SocketStream, number: int) -> None:
        body = b'{"message":"hello"}'
        await stream.send(_head(200, {"Content-Type": "application/json", "Content-Length": str(len(body))}) + body)

    async with raw_server(json_page) as server, client_at(server.base_url) as client:
        with pytest.raises(ResponseError, match="not one of") as info:
            await client.download_image("s-1", "front", to=tmp_path / "f.jpg")
    assert info.value.kind is FailureKind.PERMANENT
    assert _files(tmp_path) == []


async def _cut_first_then_whole(server: RawServer, stream: anyio.abc.SocketStream, number: int) -> None:
    """The first answer announces the whole image but stops half way; later ones are complete."""
    head = _head(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(FRONT))})
    await stream.send(head + (FRONT[: len(FRONT) // 2] if number == 1 else FRONT))


async def test_a_file_download_cut_off_is_retried_from_the_start(tmp_path: Path) -> None:
    sleeps = SleepRecorder()
    async with raw_server(_cut_first_then_whole) as server, client_at(server.base_url, sleep=sleeps) as client:
        result = await client.download_image("s-1", "front", to=tmp_path / "f.jpg")
    assert len(server.heads) == 2
    assert (tmp_path / "f.jpg").read_bytes() == FRONT and result.size == len(FRONT)
    assert _files(tmp_path) == ["f.jpg"]


async def test_a_stream_cut_off_after_handing_out_bytes_is_not_retried() -> None:
    sleeps = SleepRecorder()
    async with raw_server(_cut_first_then_whole) as server, client_at(server.base_url, sleep=sleeps) as client:
        received = b""
        with pytest.raises(ReadError) as info:
            async with client.stream_image("s-1", "front") as image:
                async for chunk in image:
                    received += chunk
    assert info.value.kind is FailureKind.PERMANENT and "not retried" in str(info.value)
    assert 0 < len(received) < len(FRONT) and FRONT.startswith(received)
    assert len(server.heads) == 1


async def test_a_failure_before_the_first_byte_of_a_stream_is_retried() -> None:
    async def error_then_image(server: RawServer, stream: anyio.abc.SocketStream, number: int) -> None:
        if number == 1:
            await stream.send(_head(502, {"Content-Type": "text/html", "Content-Length": "0"}))
        else:
            await stream.send(_head(200, {"Content-Type": "image/jpeg", "Content-Length": str(len(FRONT))}) + FRONT)

    async with raw_server(error_then_image) as server, client_at(server.base_url, sleep=SleepRecorder()) as client:
        async with client.stream_image("s-1", "front") as image:
            assert await image.read() == FRONT
    assert len(server.heads) == 2


async def test_leaving_a_stream_early_stops_the_download() -> None:
    async with raw_server(_chunked_flood) as server, client_at(server.base_url) as client:
        with anyio.fail_after(10):
            async with client.stream_image("s-1", "front") as image:
                async for _chunk in image:
                    break
    assert len(server.heads) == 1


async def test_an_exception_in_the_reader_is_not_wrapped() -> None:
    async with raw_server(_chunked_flood) as server, client_at(server.base_url) as client:
        with pytest.raises(KeyError):
            async with client.stream_image("s-1", "front") as image:
                async for _chunk in image:
                    raise KeyError("mine")
    assert len(server.heads) == 1


# ---------------------------------------------------------------------------------------------------------
# Liveness images (scans submitted with a face image)

FACE = sample_image(600, 800)


def _with_face(reference: str) -> NetverifyRequest:
    return NetverifyRequest(reference, Image.from_bytes(FRONT), "AUT", "PASSPORT", face_image=Image.from_bytes(FACE))


def _liveness_number(url: str) -> int:
    head, _, number = url.rpartition("/")
    assert head.endswith("/images/liveness")
    return int(number)


async def test_liveness_images_are_listed_and_downloaded_by_url_number_and_classifier(
    emulator: Any, tmp_path: Path
) -> None:
    import io

    from PIL import Image as PILImage

    async with emulator_client(emulator) as client:
        receipt = await client.perform_netverify(_with_face("live-1"))
        ref = receipt.scan_reference
        listed = await client.list_images(ref)
        assert {image.classifier for image in listed.images} == {"front", "face"}
        urls = listed.liveness_images
        assert isinstance(urls, tuple) and sorted(_liveness_number(url) for url in urls) == [1, 2, 3]
        assert all(ref in url for url in urls)
        downloads = {}
        for url in urls:
            number = _liveness_number(url)
            downloads[number] = await client.download_image(url, to=tmp_path / f"live-{number}.img")
        by_number = await client.download_image(ref, 2, to=tmp_path / "two.png")
        by_classifier = await client.download_image(ref, "liveness/3", to=tmp_path / "three.jpg")
        async with client.stream_image(ref, "liveness/1") as streamed:
            assert streamed.content_type == "image/jpeg"
            first = await streamed.read()
        face = await client.download_image(ref, "face", to=tmp_path / "face.jpg")
    assert face.content_type == "image/jpeg" and (tmp_path / "face.jpg").read_bytes() == FACE
    for number, download in downloads.items():
        assert download.classifier == f"liveness/{number}" and download.scan_reference == ref
        data = (tmp_path / f"live-{number}.img").read_bytes()
        assert download.size == len(data) > 0
        # the Content-Type names the format the bytes really are in
        fmt = PILImage.open(io.BytesIO(data)).format
        assert (download.content_type, fmt) == (("image/jpeg", "JPEG") if number % 2 else ("image/png", "PNG"))
    assert by_number.classifier == "liveness/2" and by_number.content_type == "image/png"
    assert (tmp_path / "two.png").read_bytes() == (tmp_path / "live-2.img").read_bytes()
    assert by_classifier.classifier == "liveness/3"
    assert (tmp_path / "three.jpg").read_bytes() == (tmp_path / "live-3.img").read_bytes()
    assert first == (tmp_path / "live-1.img").read_bytes()
    assert "<redacted>" in repr(listed)  # the liveness URLs are kept out of the repr


async def test_no_liveness_images_without_a_face_image_or_past_the_last_number(
    emulator: Any, tmp_path: Path
) -> None:
    async with emulator_client(emulator) as client:
        plain = await client.perform_netverify(_request("live-2"))
        listed = await client.list_images(plain.scan_reference)
        assert listed.liveness_images == ()
        with pytest.raises(NotFoundError):
            await client.download_image(plain.scan_reference, 1, to=tmp_path / "none.jpg")
        with_face = await client.perform_netverify(_with_face("live-3"))
        with pytest.raises(NotFoundError):
            await client.download_image(with_face.scan_reference, 4, to=tmp_path / "past.jpg")
    assert _files(tmp_path) == []


async def test_the_number_of_liveness_images_is_configurable(tmp_path: Path) -> None:
    from netverify_async.emulator import EmulatorConfig, run_emulator

    for bad in (-1, 21, True, 1.5):
        with pytest.raises(ConfigurationError, match="liveness_images"):
            EmulatorConfig(liveness_images=bad)
    async with run_emulator(processing_delay=0, liveness_images=0) as emu, emulator_client(emu) as client:
        none = await client.perform_netverify(_with_face("live-4"))
        assert (await client.list_images(none.scan_reference)).liveness_images == ()
    async with run_emulator(processing_delay=0, liveness_images=7) as emu, emulator_client(emu) as client:
        seven = await client.perform_netverify(_with_face("live-5"))
        urls = (await client.list_images(seven.scan_reference)).liveness_images
        assert isinstance(urls, tuple) and [_liveness_number(url) for url in urls] == list(range(7, 0, -1))
        last = await client.download_image(seven.scan_reference, 7, to=tmp_path / "seven.jpg")
    assert last.content_type == "image/jpeg"


async def test_the_callback_names_the_liveness_images_and_they_can_be_downloaded(tmp_path: Path) -> None:
    from netverify_async.callbacks import parse_callback
    from netverify_async.emulator import run_callback_receiver, run_emulator

    async with (
        run_callback_receiver() as receiver,
        run_emulator(processing_delay=0, allow_http_callbacks=True, callback_url_override=receiver.url) as emu,
        emulator_client(emu) as client,
    ):
        receipt = await client.perform_netverify(_with_face("live-6"))
        [delivery] = await receiver.wait_for(1)
        callback = parse_callback(delivery.form)
        urls = callback.liveness_images
        assert isinstance(urls, tuple) and len(urls) == 3
        assert set(urls) == set((await client.list_images(receipt.scan_reference)).liveness_images)
        got = await client.download_image(urls[0], to=tmp_path / "from-callback.img")
    assert got.scan_reference == receipt.scan_reference and got.classifier == f"liveness/{_liveness_number(urls[0])}"
