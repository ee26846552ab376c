"""Binary inputs: turn decoded bytes tensors into what the model takes, then validate.

Called by the HTTP handlers (TFS v1 and KServe v2) between decoding and inference::

    inputs = prepare_inputs(request.inputs, served.signature)

* Bytes aimed at a 4-D (or 5-D ``N?HWC``) numeric input are encoded images (JPEG, PNG, BMP …),
  as in OVMS: each is decoded with Pillow to **BGR** channel order (OVMS decodes with OpenCV's
  ``imdecode(IMREAD_UNCHANGED)``: gray stays one channel, alpha stays), checked for the number
  of channels, converted to the input precision, resized with bilinear interpolation
  (OpenCV's ``INTER_LINEAR`` pixel mapping) to the model's height and width, and stacked into
  ``[N, H, W, C]``. The input must be NHWC: its layout says so (``NHWC``/``N?HWC``), or it is
  unset and the last dimension is 1 or 3.
* Bytes aimed at a 1-D or 2-D U8 input are strings, converted as OVMS converts them: 2-D is one
  zero-padded row per string (width = longest + 1); 1-D is ``[count, 0, end offsets...]`` as
  little-endian uint32 followed by the concatenated bytes.

Differences from OVMS: a dynamic batch dimension does not stop resizing (OVMS resizes only
when every dimension is bounded); 8-bit images are resized in float32 and rounded (OpenCV uses
fixed point, so a pixel may differ by one); 16-bit RGB PNGs decode to 8 bits (Pillow).
Errors carry OVMS's texts: ``Image parsing failed``, ``Invalid number of channels in binary
input``, ``Received binary image input but resource not configured to accept NHWC layout``.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from .errors import InvalidInput
from .types import Dim, Signature, TensorSpec, validate_inputs

IMAGE_PARSING_FAILED = "Image parsing failed"
BAD_CHANNELS = "Invalid number of channels in binary input"
NOT_NHWC = "Received binary image input but resource not configured to accept NHWC layout"
EMPTY_STRING = "String val is empty"
SAME_RESOLUTION = "Binary input images for this endpoint are required to have the same resolution"
BAD_PRECISION = "Invalid input precision"
TOO_LARGE = "Maximum 2D array after string conversion exceeded 1GB"

_IMAGE_PRECISIONS = ("FP32", "FP64", "FP16", "I32", "I16", "I8", "U8", "U16")
_MAX_2D_BYTES = 1 << 30


def prepare_inputs(inputs: dict[str, np.ndarray], signature: Signature) -> dict[str, np.ndarray]:
    """Decode images / convert strings where the model wants numbers; then validate all inputs.

    Raises :class:`~ovserve.server.errors.InvalidInput` with OVMS's texts.
    """
    prepared = dict(inputs)
    for name, array in inputs.items():
        spec = signature.input(name)
        if spec is None or spec.shape is None or spec.precision == "STRING":
            continue
        if array.dtype.kind not in ("O", "S", "U"):
            continue
        if len(spec.shape) in (4, 5):
            prepared[name] = decode_images(_items(array), spec)
        elif spec.precision == "U8" and len(spec.shape) in (1, 2):
            prepared[name] = strings_to_u8(_items(array), two_d=len(spec.shape) == 2)
    validate_inputs(prepared, signature)
    return prepared


def has_bytes(inputs: dict[str, np.ndarray]) -> bool:
    """Whether :func:`prepare_inputs` may have images or strings to decode (slow work)."""
    return any(array.dtype.kind in ("O", "S", "U") for array in inputs.values())


def _items(array: np.ndarray) -> list[bytes]:
    return [item.encode() if isinstance(item, str) else bytes(item) for item in array.reshape(-1)]


def is_nhwc(spec: TensorSpec) -> bool:
    """Whether binary images may feed ``spec``: NHWC by layout, or by shape when unset."""
    assert spec.shape is not None
    layout = "".join(c for c in spec.layout.upper() if c.isalpha() or c == "?")
    if layout:
        return layout in ("NHWC", "N?HWC") and len(layout) == len(spec.shape)
    channels = spec.shape[-1]
    return channels.is_static and channels.min in (1, 3)


def decode_images(images: Sequence[bytes], spec: TensorSpec) -> np.ndarray:
    """Encoded images -> ``[N, H, W, C]`` (``[N, 1, H, W, C]`` for 5-D) of ``spec``'s dtype."""
    assert spec.shape is not None
    if not is_nhwc(spec):
        raise InvalidInput(NOT_NHWC)
    if spec.precision not in _IMAGE_PRECISIONS:
        raise InvalidInput(BAD_PRECISION)
    if not images:
        raise InvalidInput(
            f"Invalid input batch size - Expected: {spec.shape[0]}; Actual: 0; "
            f"input name: {spec.name}"
        )
    if any(not data for data in images):
        raise InvalidInput(EMPTY_STRING)
    height_dim, width_dim, channel_dim = spec.shape[-3:]
    frames: list[np.ndarray] = []
    target: tuple[int, int] | None = None
    for data in images:
        frame = decode_image(data)
        channels = frame.shape[2]
        if not channel_dim.accepts(channels) or (frames and channels != frames[0].shape[2]):
            raise InvalidInput(BAD_CHANNELS)
        if target is None:
            target = (_fit(height_dim, frame.shape[0]), _fit(width_dim, frame.shape[1]))
        if frame.shape[:2] != target:
            if _unbounded(height_dim) or _unbounded(width_dim):
                raise InvalidInput(SAME_RESOLUTION)
            frame = resize_bilinear(frame, *target)
        frames.append(frame)
    batch = np.stack([_to_dtype(frame, spec.dtype) for frame in frames])
    return batch[:, np.newaxis] if len(spec.shape) == 5 else batch


def _unbounded(dim: Dim) -> bool:
    return dim.min == 0 and dim.max == -1


def _fit(dim: Dim, size: int) -> int:
    """The size to resize to: a static dim, the image's own size, or the nearest range end."""
    if dim.is_static:
        return dim.min
    if dim.accepts(size):
        return size
    return dim.max if dim.max != -1 and size > dim.max else dim.min


def decode_image(data: bytes) -> np.ndarray:
    """One encoded image -> ``(H, W, C)`` in OpenCV's ``IMREAD_UNCHANGED`` layout (BGR/BGRA)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return _opencv_layout(image)
    except Exception:  # Pillow raises many kinds for bad data; OVMS says just this
        raise InvalidInput(IMAGE_PARSING_FAILED) from None


def _opencv_layout(image: Image.Image) -> np.ndarray:
    mode = image.mode
    if mode in ("1", "L"):
        return np.asarray(image.convert("L"))[:, :, np.newaxis]
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)[:, :, np.newaxis]
    if mode in ("I", "F"):
        return np.asarray(image)[:, :, np.newaxis]
    alpha = mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info)
    pixels = np.asarray(image.convert("RGBA" if alpha else "RGB"))
    order = [2, 1, 0, 3] if alpha else [2, 1, 0]
    return np.ascontiguousarray(pixels[:, :, order])


def _axis(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV INTER_LINEAR mapping: left index, right index, right weight per output pixel."""
    scale = source / target
    position = (np.arange(target) + 0.5) * scale - 0.5
    left = np.floor(position).astype(np.int64)
    weight = position - left
    low = left < 0
    left[low], weight[low] = 0, 0.0
    high = left >= source - 1
    left[high], weight[high] = source - 1, 0.0
    right = np.minimum(left + 1, source - 1)
    return left, right, weight.astype(np.float32)


def resize_bilinear(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of ``(H, W, C)`` to ``(height, width, C)``, in float32."""
    pixels = frame.astype(np.float32)
    top, bottom, wy = _axis(frame.shape[0], height)
    left, right, wx = _axis(frame.shape[1], width)
    rows = pixels[top] * (1 - wy)[:, None, None] + pixels[bottom] * wy[:, None, None]
    out: np.ndarray = rows[:, left] * (1 - wx)[None, :, None] + rows[:, right] * wx[None, :, None]
    return out


def _to_dtype(frame: np.ndarray, dtype: np.dtype[np.generic]) -> np.ndarray:
    """Like OpenCV's ``convertTo``: integers round and saturate, floats convert."""
    if dtype.kind == "f" or frame.dtype == dtype:
        return frame.astype(dtype)
    info = np.iinfo(dtype)  # type: ignore[type-var]
    values = np.rint(frame) if frame.dtype.kind == "f" else frame
    out: np.ndarray = np.clip(values, info.min, info.max).astype(dtype)
    return out


def strings_to_u8(strings: Sequence[bytes], two_d: bool) -> np.ndarray:
    """OVMS's string -> U8 conversions (see the module docstring)."""
    if two_d:
        width = max((len(s) for s in strings), default=0) + 1
        if len(strings) * width > _MAX_2D_BYTES:
            raise InvalidInput(TOO_LARGE)
        out = np.zeros((len(strings), width), np.uint8)
        for row, data in enumerate(strings):
            out[row, : len(data)] = np.frombuffer(data, np.uint8)
        return out
    ends = np.cumsum([0, *(len(s) for s in strings)], dtype=np.uint64)
    header = np.concatenate(([len(strings)], ends)).astype("<u4")
    return np.frombuffer(header.tobytes() + b"".join(strings), np.uint8).copy()


__all__ = [
    "decode_image",
    "decode_images",
    "is_nhwc",
    "prepare_inputs",
    "resize_bilinear",
    "strings_to_u8",
]
