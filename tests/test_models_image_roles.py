"""ImageRole names each image of a request once: its attribute, its wire keys, and a key that is also a string."""

from __future__ import annotations

import io
import pickle

import pytest
from PIL import Image as PILImage

from netverify_async import Image, ImageRole, NetverifyRequest


def _jpeg() -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGB", (12, 9), (10, 120, 200)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()


def request(**images: Image) -> NetverifyRequest:
    return NetverifyRequest("ref-1", images.pop("front", Image.from_bytes(JPEG)), "DEU", "PASSPORT", **images)


def test_a_role_knows_its_attribute_and_wire_keys() -> None:
    assert [(r.value, r.attribute, r.wire_key, r.mime_type_key) for r in ImageRole] == [
        ("front", "frontside_image", "frontsideImage", "frontsideImageMimeType"),
        ("back", "backside_image", "backsideImage", "backsideImageMimeType"),
        ("face", "face_image", "faceImage", "faceImageMimeType"),
    ]


def test_every_image_attribute_of_the_request_has_a_role() -> None:
    import attrs

    image_fields = {f.name for f in attrs.fields(NetverifyRequest) if f.metadata["wire"].endswith("Image")}
    assert image_fields == {role.attribute for role in ImageRole}


@pytest.mark.parametrize("role", list(ImageRole))
def test_a_role_is_its_plain_string_both_ways(role: ImageRole) -> None:
    plain = role.value
    assert role == plain and hash(role) == hash(plain)
    assert str(role) == plain and f"{role}" == plain and f"{role:>6}" == f"{plain:>6}"
    assert ImageRole(plain) is role
    # a mapping keyed by roles answers plain strings, and one keyed by plain strings answers roles
    assert {role: 1}[plain] == 1  # type: ignore[index]
    assert {plain: 1}[role] == 1
    assert plain in {role} and role in {plain}
    assert pickle.loads(pickle.dumps(role)) is role


def test_images_are_keyed_by_role_and_answer_plain_strings() -> None:
    front, face = Image.from_bytes(JPEG), Image.from_bytes(JPEG)
    req = request(front=front, face_image=face)
    images = req.images
    assert list(images) == [ImageRole.FRONT, ImageRole.FACE]
    assert all(isinstance(key, ImageRole) for key in images)
    assert images["front"] is front and images.get("face") is face and "back" not in images
    assert images == {"front": front, "face": face}


def test_replace_images_takes_plain_role_names_and_roles() -> None:
    req = request()
    new_front, new_back = Image.from_bytes(JPEG + b"\0"), Image.from_bytes(JPEG + b"\0\0")
    replaced = req.replace_images(front=new_front, back=new_back)
    assert replaced.frontside_image is new_front and replaced.backside_image is new_back
    assert replaced.face_image is None and req.frontside_image is not new_front
    by_role = req.replace_images(**{ImageRole.BACK: new_back})
    assert by_role.backside_image is new_back
    # what preflight hands back (keyed by the request's own roles) goes straight back in
    assert req.replace_images(**dict(replaced.images)) == replaced


def test_replace_images_refuses_an_unknown_role() -> None:
    with pytest.raises(TypeError, match="side"):
        request().replace_images(side=Image.from_bytes(JPEG))


def test_wire_keys_of_the_images_follow_the_roles() -> None:
    req = request(backside_image=Image.from_bytes(JPEG))
    wire = req.to_wire()
    for role in (ImageRole.FRONT, ImageRole.BACK):
        assert role.wire_key in wire and wire[role.mime_type_key] == "image/jpeg"
    assert ImageRole.FACE.wire_key not in wire
