"""The async preflight API on asyncio and trio: worker threads, the per-loop limiter, whole requests."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest
from _preflight_support import encode, jpeg, picture, png

from netverify_async import (
    IdType,
    Image,
    MimeType,
    NetverifyRequest,
    PreflightError,
    _preflight,
    changed_images,
    check_image_sync,
    preflight,
    preflight_request,
)
from netverify_async._preflight import _cpu_count, _default_limiter

pytestmark = [pytest.mark.anyio, pytest.mark.both_loops]


async def test_image_object_is_checked_like_the_sync_core_and_returned_as_is() -> None:
    image = Image.from_bytes(png(), "image/jpeg")
    report = await preflight(image, role="back")
    assert report == check_image_sync(image.data, image.mime_type, role="back")
    assert report.error_codes == {"mime_mismatch"} and report.role == "back"
    assert report.image is image


async def test_raw_bytes_are_checked_without_a_declared_type() -> None:
    data = png()
    report = await preflight(data)
    assert report.ok
    assert report.image == Image(data, MimeType.PNG)


async def test_fix_returns_a_new_image() -> None:
    report = await preflight(encode(picture(1200, 800), "WEBP"), fix=True)
    assert report.ok and report.changed
    assert report.image is not None and report.image.mime_type is MimeType.JPEG


async def test_pillow_work_waits_for_the_given_limiter() -> None:
    limiter = anyio.CapacityLimiter(1)
    finished: list[bool] = []
    async with anyio.create_task_group() as tg:
        async with limiter:  # hold the only token: the check cannot start

            async def run() -> None:
                await preflight(jpeg(), limiter=limiter)
                finished.append(True)

            tg.start_soon(run)
            for _ in range(20):
                await anyio.lowlevel.checkpoint()
            assert finished == [] and limiter.statistics().tasks_waiting == 1
    assert finished == [True]


async def test_the_check_runs_in_a_worker_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: list[int] = []
    real = _preflight._run_check

    def spy(*args: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(_preflight, "_run_check", spy)
    await preflight(jpeg())
    await preflight_request(_request(front=Image.from_bytes(jpeg()), face=Image.from_bytes(jpeg())))
    assert len(threads) == 3
    assert threading.get_ident() not in threads


async def test_default_limiter_is_one_per_event_loop_sized_to_the_cpus() -> None:
    first = _default_limiter()
    assert first is _default_limiter()
    assert first.total_tokens == _cpu_count()
    await preflight(png())
    assert _default_limiter() is first


async def test_bad_arguments_fail_before_any_work() -> None:
    with pytest.raises(ValueError, match="role"):
        await preflight(png(), role="selfie")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Image or bytes"):
        await preflight("image.png")  # type: ignore[arg-type]


def _request(**images: Image) -> NetverifyRequest:
    return NetverifyRequest(
        merchant_id_scan_reference="order-1234",
        frontside_image=images["front"],
        country="DEU",
        id_type=IdType.ID_CARD,
        backside_image=images.get("back"),
        face_image=images.get("face"),
    )


async def test_every_image_of_a_request_is_checked_by_role() -> None:
    request = _request(
        front=Image.from_bytes(jpeg()),
        back=Image.from_bytes(png(300, 200)),
        face=Image.from_bytes(png(mode="L")),
    )
    reports = await preflight_request(request, integrity="header")
    assert list(reports) == ["front", "back", "face"]
    assert reports["front"].ok and reports["front"].role == "front"
    assert reports["back"].error_codes == {"too_small"}
    assert reports["face"].ok and "grayscale" not in reports["face"].warning_codes
    with pytest.raises(PreflightError, match="back image failed preflight: too_small"):
        reports["back"].raise_for_errors()


async def test_fixed_images_go_back_into_the_request() -> None:
    front = Image.from_bytes(encode(picture(1200, 800), "WEBP"))
    face = Image.from_bytes(jpeg())
    request = _request(front=front, face=face)
    reports = await preflight_request(request, fix=True)
    fixed = changed_images(reports)
    assert list(fixed) == ["front"]
    updated = request.replace_images(**fixed)
    assert updated.frontside_image.mime_type is MimeType.JPEG
    assert updated.face_image is face
    assert all(r.ok for r in (await preflight_request(updated)).values())
