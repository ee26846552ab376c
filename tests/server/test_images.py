"""Binary inputs: images decoded (BGR), checked, resized, converted; strings for U8 inputs."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from ovserve.server import errors, images
from ovserve.server.types import Dim, Signature, TensorSpec


def spec(name: str, precision: str, shape: tuple[int | Dim, ...], layout: str = "") -> TensorSpec:
    dims = tuple(
        d if isinstance(d, Dim) else Dim.static(d) if d >= 0 else Dim.dynamic() for d in shape
    )
    return TensorSpec(name, precision, dims, layout)


def model(tensor: TensorSpec) -> Signature:
    """Like ``ovtest_models.image_model``: one NHWC image in, per-channel mean out."""
    return Signature((tensor,), (spec("mean", "FP32", (-1, 3)),))


IMAGE = model(spec("image", "FP32", (-1, 4, 6, 3), "NHWC"))


def encode(pixels: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels, mode=mode).save(buf, format=fmt)
    return buf.getvalue()


def solid(height: int, width: int, rgb: tuple[int, ...], fmt: str = "PNG") -> bytes:
    pixels = np.zeros((height, width, len(rgb)), np.uint8)
    pixels[...] = rgb
    return encode(pixels, fmt)


def request(*items: bytes, name: str = "image") -> dict[str, np.ndarray]:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return {name: array}


def test_png_is_decoded_to_bgr_and_resized() -> None:
    out = images.prepare_inputs(request(solid(8, 12, (10, 20, 30))), IMAGE)["image"]
    assert out.shape == (1, 4, 6, 3)
    assert out.dtype == np.float32
    assert np.array_equal(out[0, 0, 0], [30, 20, 10])
    assert np.all(out == out[0, 0, 0])


def test_jpeg_and_a_batch() -> None:
    first = solid(4, 6, (200, 100, 50), "JPEG")
    second = solid(16, 24, (0, 0, 255), "JPEG")
    out = images.prepare_inputs(request(first, second), IMAGE)["image"]
    assert out.shape == (2, 4, 6, 3)
    assert np.allclose(out[0].mean(axis=(0, 1)), [50, 100, 200], atol=3)
    assert np.allclose(out[1].mean(axis=(0, 1)), [255, 0, 0], atol=3)


@pytest.mark.parametrize(
    ("row", "width", "expected"),
    [
        ([0, 100], 4, [0, 25, 75, 100]),  # upscale: OpenCV's half-pixel centres, clamped ends
        ([0, 10, 20, 30], 2, [5, 25]),  # exact halving: the mean of each pair
        ([0, 30, 60], 2, [7.5, 52.5]),
        ([40, 80], 2, [40, 80]),  # same size: untouched
    ],
    ids=["upscale", "halve", "two thirds", "same"],
)
def test_bilinear_matches_opencv_inter_linear(
    row: list[int], width: int, expected: list[float]
) -> None:
    frame = np.array(row, np.uint8)[np.newaxis, :, np.newaxis]
    out = images.resize_bilinear(frame, 1, width)
    assert out.shape == (1, width, 1)
    assert np.allclose(out[0, :, 0], expected)


def test_u8_model_rounds_and_keeps_bytes() -> None:
    sig = model(spec("image", "U8", (1, 1, 4, 3), "NHWC"))
    pixels = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)  # 1 x 2, resized to 1 x 4
    out = images.prepare_inputs(request(encode(pixels)), sig)["image"]
    assert out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 64, 191, 255]


@pytest.mark.parametrize(
    ("pixels", "mode", "channels"),
    [
        (np.full((2, 2), 7, np.uint8), "L", 1),
        (np.full((2, 2, 4), 9, np.uint8), "RGBA", 4),
        (np.full((2, 2, 3), 5, np.uint8), "RGB", 3),
    ],
    ids=["gray", "rgba", "rgb"],
)
def test_decoded_like_imread_unchanged(pixels: np.ndarray, mode: str, channels: int) -> None:
    frame = images.decode_image(encode(pixels, mode=mode))
    assert frame.shape == (2, 2, channels)
    assert frame.dtype == np.uint8


def test_gray_image_into_one_channel_model() -> None:
    sig = model(spec("image", "FP32", (-1, 2, 2, 1)))  # layout unset, last dim 1: NHWC
    out = images.prepare_inputs(request(encode(np.full((2, 2), 7, np.uint8), mode="L")), sig)
    assert out["image"].shape == (1, 2, 2, 1)
    assert np.all(out["image"] == 7)


def test_dynamic_height_and_width_keep_the_image_size() -> None:
    sig = model(spec("image", "FP32", (-1, -1, -1, 3), "NHWC"))
    out = images.prepare_inputs(request(solid(5, 7, (1, 2, 3)), solid(5, 7, (4, 5, 6))), sig)
    assert out["image"].shape == (2, 5, 7, 3)


def test_range_dimensions_clamp_the_size() -> None:
    sig = model(spec("image", "FP32", (-1, Dim(2, 3), Dim(10, 20), 3), "NHWC"))
    out = images.prepare_inputs(request(solid(8, 4, (1, 2, 3))), sig)
    assert out["image"].shape == (1, 3, 10, 3)


def test_five_dimensional_n_hwc() -> None:
    sig = model(spec("image", "FP32", (-1, 1, 4, 6, 3), "N?HWC"))
    assert images.prepare_inputs(request(solid(4, 6, (1, 2, 3))), sig)["image"].shape == (
        1, 1, 4, 6, 3)


BAD = [
    ("not an image", IMAGE, [b"not an image"], errors.InvalidInput, images.IMAGE_PARSING_FAILED),
    ("truncated png", IMAGE, [solid(8, 12, (1, 2, 3))[:40]], errors.InvalidInput,
     images.IMAGE_PARSING_FAILED),
    ("empty", IMAGE, [b""], errors.InvalidInput, images.EMPTY_STRING),
    ("gray into rgb", IMAGE, [encode(np.zeros((4, 6), np.uint8), mode="L")], errors.InvalidInput,
     images.BAD_CHANNELS),
    ("rgba into rgb", IMAGE, [encode(np.zeros((4, 6, 4), np.uint8), mode="RGBA")],
     errors.InvalidInput, images.BAD_CHANNELS),
    ("channels differ in a batch", model(spec("image", "FP32", (-1, 4, 6, -1), "NHWC")),
     [solid(4, 6, (1, 2, 3)), encode(np.zeros((4, 6), np.uint8), mode="L")],
     errors.InvalidInput, images.BAD_CHANNELS),
    ("nchw layout", model(spec("image", "FP32", (-1, 3, 4, 6), "NCHW")), [solid(4, 6, (1, 2, 3))],
     errors.InvalidInput, images.NOT_NHWC),
    ("nchw by shape", model(spec("image", "FP32", (-1, 3, 224, 224))), [solid(4, 6, (1, 2, 3))],
     errors.InvalidInput, images.NOT_NHWC),
    ("sizes differ, unbounded", model(spec("image", "FP32", (-1, -1, -1, 3), "NHWC")),
     [solid(4, 6, (1, 2, 3)), solid(5, 6, (1, 2, 3))], errors.InvalidInput,
     images.SAME_RESOLUTION),
    ("boolean model", model(spec("image", "BOOL", (-1, 4, 6, 3), "NHWC")),
     [solid(4, 6, (1, 2, 3))], errors.InvalidInput, images.BAD_PRECISION),
    ("no images", IMAGE, [], errors.InvalidInput,
     "Invalid input batch size - Expected: -1; Actual: 0; input name: image"),
    ("batch too large", model(spec("image", "FP32", (1, 4, 6, 3), "NHWC")),
     [solid(4, 6, (1, 2, 3))] * 2, errors.InvalidInput,
     "Invalid input batch size - Expected: 1; Actual: 2; input name: image"),
]


@pytest.mark.parametrize(("sig", "items", "kind", "message"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_image_errors(
    sig: Signature, items: list[bytes], kind: type[errors.ServingError], message: str
) -> None:
    with pytest.raises(kind) as caught:
        images.prepare_inputs(request(*items), sig)
    assert caught.value.message == message


def test_strings_into_a_two_dimensional_u8_input() -> None:
    sig = model(spec("x", "U8", (-1, -1)))
    out = images.prepare_inputs(request(b"abc", b"", b"de", name="x"), sig)["x"]
    assert out.dtype == np.uint8
    assert out.tolist() == [[97, 98, 99, 0], [0, 0, 0, 0], [100, 101, 0, 0]]


def test_strings_into_a_one_dimensional_u8_input() -> None:
    sig = model(spec("x", "U8", (-1,)))
    out = images.prepare_inputs(request(b"abc", b"de", name="x"), sig)["x"]
    header = struct.pack("<4I", 2, 0, 3, 5)
    assert out.tobytes() == header + b"abcde"
    assert out.dtype == np.uint8


def test_str_items_are_encoded() -> None:
    sig = model(spec("x", "U8", (-1, -1)))
    items = np.array(["é"], dtype=object)
    assert images.prepare_inputs({"x": items}, sig)["x"].tolist() == [[0xC3, 0xA9, 0]]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({}, "Invalid number of inputs - Expected: 1; Actual: 0"),
        ({"picture": np.zeros((1, 4, 6, 3), np.float32)},
         "Missing input with specific name - Required input: image"),
        ({"image": np.zeros((1, 4, 6, 3), np.float32), "extra": np.zeros(1, np.float32)},
         "Invalid number of inputs - Expected: 1; Actual: 2"),
        ({"image": np.zeros((1, 4, 6, 3), np.float64)},
         "Invalid input precision - Expected: FP32; Actual: FP64; input name: image"),
        ({"image": np.zeros((1, 5, 6, 3), np.float32)},
         "Invalid input shape - Expected: (-1,4,6,3); Actual: (1,5,6,3); input name: image"),
    ],
    ids=["missing", "wrong-name", "extra", "precision", "shape"],
)
def test_other_inputs_are_validated(inputs: dict[str, np.ndarray], message: str) -> None:
    with pytest.raises(errors.InvalidInput) as caught:
        images.prepare_inputs(inputs, IMAGE)
    assert caught.value.message == message


def test_numeric_inputs_pass_through_untouched() -> None:
    array = np.ones((2, 4, 6, 3), np.float32)
    assert images.prepare_inputs({"image": array}, IMAGE)["image"] is array


def test_bytes_for_a_numeric_two_dimensional_input_fail_validation() -> None:
    sig = model(spec("x", "FP32", (-1, 3)))
    with pytest.raises(errors.InvalidInput) as caught:
        images.prepare_inputs(request(b"abc", name="x"), sig)
    assert caught.value.message == (
        "Invalid input precision - Expected: FP32; Actual: STRING; input name: x"
    )


@pytest.mark.parametrize(
    ("tensor", "nhwc"),
    [
        (spec("i", "FP32", (-1, 4, 6, 3), "NHWC"), True),
        (spec("i", "FP32", (-1, 4, 6, 3), "[N,H,W,C]"), True),
        (spec("i", "FP32", (-1, 4, 6, 3)), True),
        (spec("i", "FP32", (-1, 4, 6, 1)), True),
        (spec("i", "FP32", (-1, 4, 6, 4)), False),
        (spec("i", "FP32", (-1, 3, 4, 6)), False),
        (spec("i", "FP32", (-1, 4, 6, -1)), False),
        (spec("i", "FP32", (-1, 4, 6, 3), "NCHW"), False),
    ],
    ids=["NHWC", "bracketed", "unset, 3", "unset, 1", "unset, 4", "unset, NCHW-shaped",
         "unset, dynamic", "NCHW"],
)
def test_nhwc_detection(tensor: TensorSpec, nhwc: bool) -> None:
    assert images.is_nhwc(tensor) is nhwc


def test_end_to_end_with_the_real_image_model(tmp_path: object) -> None:
    """b64 PNG -> decode_predict -> prepare_inputs -> OpenVINO: the mean comes out in BGR."""
    import base64
    import json
    from pathlib import Path

    import openvino as ov
    import ovtest_models

    from ovserve.server.codecs import tfs

    folder = ovtest_models.image_model(Path(str(tmp_path)), height=4, width=6)
    compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU")
    png = base64.b64encode(solid(8, 12, (10, 20, 30))).decode()
    body = json.dumps({"instances": [{"image": {"b64": png}}]}).encode()
    decoded = tfs.decode_predict(body, IMAGE)
    inputs = images.prepare_inputs(decoded.inputs, IMAGE)
    mean = compiled(inputs)[compiled.output("mean")]
    assert np.allclose(mean, [[30.0, 20.0, 10.0]])
    assert tfs.encode_predict({"mean": mean}, decoded.row) == b'{"predictions":[[30.0,20.0,10.0]]}'
