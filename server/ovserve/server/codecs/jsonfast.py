"""Large JSON numeric arrays straight from bytes to numpy, without Python lists.

Used by :mod:`.tfs` when ``decode_predict(..., scan=True)`` for bodies such as::

    {"instances": [[[[0.5488135, 0.71518934, ...], ...], ...]]}     # float32 [1,3,224,224]
    {"inputs": {"a": [[1, 2], [3, 4]], "b": [[5, 6], [7, 8]]}}

It is not the default: measured on the 2-core development VM (2.9 MB body, float32
[1,3,224,224]), ``json.loads`` + ``numpy`` took ~30-50 ms, orjson + numpy (the default path)
~10-16 ms, this scanner ~15-22 ms (also with two threads decoding at once): numpy's many
passes over the text cost more there than orjson's C parser building 150k floats. It stays an
option for hosts where memory bandwidth is cheap relative to Python object creation.

:func:`find_spans` locates long runs of numeric-array text (between JSON structural marks:
quotes, braces, colons; text with whitespace is left alone) and validates each in one chunked
pass: separators ``,[]`` delimit every gap, which must be a number between ``[``/``,`` and
``,``/``]`` at the innermost level, or empty between ``[[``, ``]]``, ``],``, ``,[``; levels must
be rectangular; digits, dots and minus signs are counted so no other byte hides in a number.
The caller replaces every span with a placeholder string (:func:`substitute`), parses the
small rest with orjson, and asks the :class:`Span` at a placeholder for its values once it
knows the dtype. Anything unusual makes :meth:`Span.values` return ``None`` and the caller
parses that text the general way.

Values (float32/float16): tokens are gathered left-aligned into ``count x width`` bytes (in
chunks, so work space stays in cache); sign, leading digit, leading zero and the dot are
checked per token; digits are packed 2 -> 4 -> 8 per lane in place (SWAR) and
``value = mantissa / 10**fraction`` in float64. The result equals ``float32(float64(decimal))``
(what ``json.loads`` + numpy and OVMS's ``static_cast<float>(double)`` give): that float64 is
within a few ulps of the decimal, and every value whose ``value * (1 +- 64 eps)`` interval
straddles a float32 rounding boundary is re-parsed exactly with :func:`float`, as are numbers
with an exponent.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass

import numpy as np

MIN_SPAN_BYTES = 4096
"""Spans shorter than this are left to the general path (orjson is fast enough there)."""
MAX_TOKEN = 40
"""Longest number text handled here; longer numbers send the span to the general path."""

_WS = b" \t\n\r"
_NUMBER = re.compile(rb"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_POW10 = np.array([float(10**k) for k in range(64)])
_TOLERANCE = 64 * float(np.finfo(np.float64).eps)
_MAX_HARD_SHARE = 8  # more than 1/8 of the tokens need float(): general path is as fast
_SCAN_CHUNK = 1 << 18  # bytes per scan step (work space stays in cache)

_COMMA, _OPEN, _CLOSE, _DOT, _MINUS, _ZERO = 44, 91, 93, 46, 45, 48


@dataclass
class Span:
    """One rectangular numeric nested array found in a body: where it is and its layout."""

    start: int
    """Offset of the opening ``[`` in the body."""
    end: int
    """Offset just past the closing ``]``."""
    source: bytes
    """The body."""
    offset: int
    """Where the span's text starts in :attr:`source` (same as :attr:`start`)."""
    size: int
    """Length of the span's text."""
    shape: tuple[int, ...]
    starts: np.ndarray
    """Offset of every number token in the span's text, in row-major order."""
    lengths: np.ndarray
    """Length of every number token."""
    digits: int
    """How many digits the text holds (likewise dots and minus signs)."""
    dots: int
    minus: int

    @property
    def view(self) -> np.ndarray:
        """The span's text as uint8."""
        return np.frombuffer(self.source, np.uint8, count=self.size, offset=self.offset)

    def holds(self, byte: bytes) -> bool:
        return self.source.find(byte, self.offset, self.offset + self.size) >= 0

    def text(self) -> bytes:
        """The span's text, for the general path."""
        return self.source[self.offset : self.offset + self.size]

    def first_is_integer(self) -> bool:
        """Whether the first number has neither fraction nor exponent (OVMS types by it)."""
        first = self.source[self.offset + int(self.starts[0]) :][: int(self.lengths[0])]
        return not any(c in first for c in (b".", b"e", b"E"))

    def values(self, dtype: np.dtype[np.generic]) -> np.ndarray | None:
        """The numbers as ``dtype`` in :attr:`shape`; ``None``: use the general path instead."""
        if dtype.kind != "f" or dtype.itemsize > 4:
            return None  # integers and float64 stay exact on the general path
        flat = _floats(self, dtype)
        return None if flat is None else flat.reshape(self.shape)


def new_marker() -> str:
    """A placeholder prefix no client can guess (one per request)."""
    return "\x00ovserve-span-" + secrets.token_hex(8) + ":"


def substitute(body: bytes, spans: list[Span], marker: str) -> bytes:
    """``body`` with span ``i`` replaced by the JSON string ``marker + str(i)``."""
    escaped = marker.replace("\x00", "\\u0000").encode()
    parts: list[bytes] = []
    last = 0
    for index, span in enumerate(spans):
        parts += [body[last : span.start], b'"', escaped, str(index).encode(), b'"']
        last = span.end
    parts.append(body[last:])
    return b"".join(parts)


def find_spans(body: bytes, min_bytes: int = MIN_SPAN_BYTES) -> list[Span]:
    """Every well-formed rectangular numeric array of at least ``min_bytes`` bytes in ``body``."""
    if len(body) < min_bytes or b"\x00" in body:
        return []
    marks = _marks(body)
    if marks is None:
        return []
    bounds = [-1, *marks, len(body)]
    spans: list[Span] = []
    for lo, hi in itertools.pairwise(bounds):
        if hi - lo > min_bytes:
            span = _cut(body, lo + 1, hi)
            if span is not None and span.end - span.start >= min_bytes:
                spans.append(span)
    return spans


def parse(text: bytes, dtype: np.dtype[np.generic]) -> np.ndarray | None:
    """``text`` (one JSON array, nothing around it) as numpy, or ``None`` if not fast-parsable."""
    span = _cut(text, 0, len(text))
    if span is None or span.start != 0 or text[span.end :].strip(_WS):
        return None
    return span.values(dtype)


def _marks(body: bytes, limit: int = 4096) -> list[int] | None:
    """Sorted offsets of ``"{}:`` (found with bytes.find); ``None`` if there are too many."""
    found: list[int] = []
    for mark in (b'"', b"{", b"}", b":"):
        at = body.find(mark)
        while at >= 0:
            found.append(at)
            if len(found) > limit:
                return None
            at = body.find(mark, at + 1)
    found.sort()
    return found


# Separator pairs around each gap, coded (here, after) with "[" 0, "," 1, "]" 2: which pairs
# may enclose a number, which may be adjacent with nothing between.
_WITH_NUMBER = np.zeros(9, np.bool_)
_WITH_NUMBER[[0 * 3 + 1, 0 * 3 + 2, 1 * 3 + 1, 1 * 3 + 2]] = True  # "[1," "[1]" ",1," ",1]"
_EMPTY = np.zeros(9, np.bool_)
_EMPTY[[0 * 3 + 0, 2 * 3 + 2, 2 * 3 + 1, 1 * 3 + 0]] = True  # "[[" "]]" "]," ",["


_Skeleton = tuple[int, tuple[int, ...], np.ndarray, np.ndarray, np.ndarray]
"""End offset, shape, token starts, token lengths, counts of digits/dots/minus signs."""


class _Scan:
    """Work space and results of :func:`_skeleton`, filled chunk by chunk."""

    def __init__(self, size: int) -> None:
        self.mask, self.other = np.empty(size, np.bool_), np.empty(size, np.bool_)
        self.work = np.empty(size, np.uint8)
        self.counts = np.zeros(3, np.int64)
        self.starts: list[np.ndarray] = []
        self.lengths: list[np.ndarray] = []
        self.opens: list[np.ndarray] = []
        self.closes: list[np.ndarray] = []
        self.token_depths: set[int] = set()

    def separators(self, part: np.ndarray) -> np.ndarray:
        """Offsets of ``,[]`` in ``part``."""
        m, o = self.mask[: len(part)], self.other[: len(part)]
        np.equal(part, np.uint8(_COMMA), out=m)
        m |= np.equal(part, np.uint8(_OPEN), out=o)
        m |= np.equal(part, np.uint8(_CLOSE), out=o)
        return np.flatnonzero(m)

    def count(self, part: np.ndarray) -> None:
        """Add up the digits, dots and minus signs of ``part``."""
        o, w = self.other[: len(part)], self.work[: len(part)]
        np.subtract(part, np.uint8(_ZERO), out=w)
        self.counts[0] += np.count_nonzero(np.less(w, np.uint8(10), out=o))
        self.counts[1] += np.count_nonzero(np.equal(part, np.uint8(_DOT), out=o))
        self.counts[2] += np.count_nonzero(np.equal(part, np.uint8(_MINUS), out=o))


def _skeleton(v: np.ndarray) -> _Skeleton | None:
    """Validate the array that opens at ``v[0]`` and find its end, shape and number tokens.

    One pass in cache-sized chunks with reused masks: fresh multi-megabyte temporaries cost
    more in page faults than the comparisons themselves. Every gap between two separators
    must be a number between ``[``/``,`` and ``,``/``]`` at the innermost level, or empty
    between ``[[``, ``]]``, ``],`` or ``,[``; levels are checked rectangular at the end.
    """
    scan = _Scan(min(len(v), _SCAN_CHUNK))
    depth_before = 0
    previous = np.zeros(0, np.int64)  # the last separator of the previous chunk
    previous_code = np.zeros(0, np.uint8)
    previous_depth = np.zeros(0, np.int32)
    for offset in range(0, len(v), _SCAN_CHUNK):
        part = v[offset : offset + _SCAN_CHUNK]
        local = scan.separators(part)
        kind = part[local]
        depth = np.cumsum((kind == _OPEN).astype(np.int32) - (kind == _CLOSE), dtype=np.int32)
        depth += depth_before
        closed = np.flatnonzero(depth <= 0)
        if len(closed):
            cut = int(closed[0])
            local, kind, depth = local[: cut + 1], kind[: cut + 1], depth[: cut + 1]
            part = part[: int(local[-1]) + 1]
        scan.count(part)
        pos = local + offset
        code = (kind == _COMMA).view(np.uint8) + np.uint8(2) * (kind == _CLOSE).view(np.uint8)
        scan.opens.append(np.stack((pos[kind == _OPEN], depth[kind == _OPEN])))
        scan.closes.append(np.stack((pos[kind == _CLOSE], depth[kind == _CLOSE] + 1)))
        pos = np.concatenate((previous, pos))
        code = np.concatenate((previous_code, code))
        depth_all = np.concatenate((previous_depth, depth))
        pair = code[:-1] * np.uint8(3) + code[1:]
        gap = np.diff(pos) - 1
        tokens = np.flatnonzero(gap)
        if not np.all(_WITH_NUMBER[pair[tokens]]):
            return None  # "[1[", "]1,": a number out of place
        pair[tokens] = 0  # "[[" is a valid empty pair: only the gaps without a number are left
        if not np.all(_EMPTY[pair]):
            return None  # "[]", ",,", "][": an empty element or a missing comma
        if len(tokens):
            levels = depth_all[tokens]
            scan.token_depths.update((int(levels.min()), int(levels.max())))
        scan.starts.append(pos[tokens] + 1)
        scan.lengths.append(gap[tokens])
        if len(closed):
            if depth[-1] != 0:
                return None
            return _shape(scan, int(pos[-1]) + 1)
        previous, previous_code, previous_depth = pos[-1:], code[-1:], depth_all[-1:]
        depth_before = int(depth[-1]) if len(depth) else depth_before
    return None  # never closed


def _shape(scan: _Scan, end: int) -> _Skeleton | None:
    """Check that every level of the array is rectangular; the shape."""
    opens, closes = np.concatenate(scan.opens, axis=1), np.concatenate(scan.closes, axis=1)
    ndim = int(opens[1].max())
    if scan.token_depths != {ndim}:
        return None  # numbers above the innermost level
    dims: list[int] = []
    for level in range(1, ndim + 1):
        level_opens = opens[0, opens[1] == level]
        level_closes = closes[0, closes[1] == level]
        if len(level_opens) != len(level_closes):
            return None
        children = (
            np.concatenate(scan.starts) if level == ndim else opens[0, opens[1] == level + 1]
        )
        counts = np.searchsorted(children, level_closes) - np.searchsorted(children, level_opens)
        first = int(counts[0])
        if first < 1 or np.any(counts != first):
            return None
        dims.append(first)
    return end, tuple(dims), np.concatenate(scan.starts), np.concatenate(scan.lengths), scan.counts


def _cut(body: bytes, lo: int, hi: int) -> Span | None:
    """The array opening at the first ``[`` in ``body[lo:hi]``, if it closes inside that range.

    Text with whitespace is left to the general path (removing it safely costs a pass more).
    """
    start = body.find(b"[", lo, hi)
    if start < 0 or any(body.find(ws, start, hi) >= 0 for ws in _WS):
        return None
    skeleton = _skeleton(np.frombuffer(body, np.uint8, count=hi - start, offset=start))
    if skeleton is None:
        return None
    size, shape, starts, lengths, counts = skeleton
    digits, dots, minus = (int(c) for c in counts)
    return Span(start, start + size, body, start, size, shape, starts, lengths, digits, dots, minus)


_KEEP = np.array([(1 << (8 * n)) - 1 for n in range(8)] + [0xFFFFFFFFFFFFFFFF], np.uint64)
"""``_KEEP[n]``: a word mask keeping its ``n`` lowest bytes."""
_TOKEN_CHUNK = 1 << 15
"""Tokens per step: every temporary stays a few hundred kilobytes (cache, no page faults)."""


class _Rows:
    """Tokens left-aligned in ``width`` columns, one row per token.

    Checks read whole columns (``bytes[:, j]``), not scattered bytes; then :meth:`to_digits`
    turns the rows into digit values in place.
    """

    def __init__(self, span: Span, first: int, last: int, lengths: np.ndarray, width: int) -> None:
        view, starts = span.view, span.starts[first:last]
        self.width, self.count, self.lengths = width, len(starts), lengths
        if span.size < 2 * width:  # a short text: pad it whole
            view = np.concatenate((view, np.zeros(width, np.uint8)))
        late = np.flatnonzero(starts > len(view) - width)  # windows running past the text
        window = starts.copy()
        window[late] = 0
        items = np.ndarray(
            (len(view) - width + 1,), np.dtype(f"V{width}"), buffer=view, strides=(1,)
        )
        self.bytes = items[window].view(np.uint8).reshape(self.count, width)
        if len(late):
            tail_start = len(view) - 2 * width
            tail = np.concatenate((view[tail_start:], np.zeros(width, np.uint8)))
            self.bytes[late] = np.lib.stride_tricks.sliding_window_view(tail, width)[
                starts[late] - tail_start
            ]

    def column(self, j: int, negative: np.ndarray | None = None) -> np.ndarray:
        """Column ``j`` (``j + 1`` in the rows of negative numbers)."""
        col: np.ndarray = self.bytes[:, min(j, self.width - 1)]
        if negative is None:
            return col
        return np.where(negative, self.bytes[:, min(j + 1, self.width - 1)], col)

    def to_digits(self, negative: np.ndarray | None, dot_col: np.ndarray) -> None:
        """ASCII -> digit values in place; 0 for signs, dots and everything after a token."""
        width, flat = self.width, self.bytes.reshape(-1)
        np.subtract(flat, np.uint8(_ZERO), out=flat)
        words = self.bytes.view(np.uint64)
        keep = np.empty(self.count, np.int64)
        mask = np.empty(self.count, np.uint64)
        for k in range(width // 8):
            np.subtract(self.lengths, 8 * k, out=keep)
            np.clip(keep, 0, 8, out=keep)
            words[:, k] &= np.take(_KEEP, keep, out=mask)
        dotted = np.flatnonzero(dot_col >= 0)
        flat[dotted * width + dot_col[dotted]] = 0
        if negative is not None:
            self.bytes[:, 0] *= ~negative


def _hard(span: Span) -> tuple[np.ndarray, list[bytes]] | None:
    """Tokens with an exponent: indices and texts (strict JSON grammar checked)."""
    at: list[int] = []
    end = span.offset + span.size
    for mark in (b"e", b"E", b"+"):
        found = span.source.find(mark, span.offset, end)
        while found >= 0:
            at.append(found - span.offset)
            if len(at) * _MAX_HARD_SHARE > len(span.starts):
                return None
            found = span.source.find(mark, found + 1, end)
    which = np.unique(np.searchsorted(span.starts, at, side="right") - 1)
    texts = [_token(span, i) for i in which.tolist()]
    if any(_NUMBER.fullmatch(t) is None for t in texts):
        return None
    return which, texts


def _token(span: Span, i: int) -> bytes:
    s = span.offset + int(span.starts[i])
    return span.source[s : s + int(span.lengths[i])]


def _is_digit(byte: np.ndarray) -> np.ndarray:
    return (byte - np.uint8(_ZERO)) < 10


def _check(rows: _Rows, negative: np.ndarray | None) -> tuple[np.ndarray, int] | None:
    """Grammar of every token: a leading digit, no leading zero, a dot followed by a digit.

    Returns each token's dot column (-1 if none) and how many dots were found (one per token
    at most: the caller compares with the dots in the text, which proves there are no more).
    """
    first, second = rows.column(0, negative), rows.column(1, negative)
    if not np.all(_is_digit(first)):
        return None  # "-", ".5", "-.5"
    if np.any((first == _ZERO) & _is_digit(second)):
        return None  # "01"
    lead = 0 if negative is None else negative.view(np.uint8)
    short = rows.lengths <= 2 + (0 if negative is None else negative)
    at_dot = second == _DOT
    if np.any(at_dot & (short | ~_is_digit(rows.column(2, negative)))):
        return None  # "1." has no fraction digits
    dot_col = np.where(at_dot, 1 + np.asarray(lead, np.int64), -1)
    located = int(np.count_nonzero(at_dot))
    rest = np.flatnonzero(~at_dot & ~short)
    if len(rest):  # a dot further right: an integer part of two digits or more
        block = rows.bytes[rest, 2:] == _DOT
        hit = block.any(axis=1)
        which, column = rest[hit], block[hit].argmax(axis=1) + 2
        if np.any(column + 1 >= rows.lengths[which]):
            return None
        if not np.all(_is_digit(rows.bytes[which, column + 1])):
            return None
        dot_col[which] = column
        located += len(which)
    return dot_col, located


def _digit_groups(rows: _Rows) -> np.ndarray:
    """Digit bytes (0-9, 0 elsewhere) -> one integer per 8 columns, ``(count, width // 8)``.

    SWAR in place: pairs (uint16 lanes) -> quads (uint32) -> octs (uint64); a group's first
    column is its lowest byte and its most significant digit.
    """
    data = rows.bytes.reshape(-1)
    spare = np.empty_like(data)
    pairs, high = data.view(np.uint16), spare.view(np.uint16)
    np.right_shift(pairs, np.uint16(8), out=high)
    pairs &= np.uint16(0xFF)
    pairs *= np.uint16(10)
    pairs += high
    quads, high32 = data.view(np.uint32), spare.view(np.uint32)
    np.right_shift(quads, np.uint32(16), out=high32)
    quads &= np.uint32(0xFFFF)
    quads *= np.uint32(100)
    quads += high32
    octs, high64 = data.view(np.uint64), spare.view(np.uint64)
    np.right_shift(octs, np.uint64(32), out=high64)
    octs &= np.uint64(0xFFFFFFFF)
    octs *= np.uint64(10000)
    octs += high64
    groups: np.ndarray = octs.reshape(rows.count, -1)
    return groups


def _chunk(
    span: Span, first: int, last: int, width: int, hard: np.ndarray, tally: list[int]
) -> tuple[_Rows, np.ndarray | None, np.ndarray] | None:
    """Rows ``first:last`` checked and turned into digits: ``(rows, negative, dot col)``.

    ``tally`` adds up the dots and signs found, to be compared with the text's counts.
    """
    lengths = span.lengths[first:last]
    mine = hard[(hard >= first) & (hard < last)] - first
    if len(mine):
        lengths = lengths.copy()
        lengths[mine] = 1
    rows = _Rows(span, first, last, lengths, width)
    if len(mine):  # stand-ins: a "0" in each exponent token's row, parsed exactly later
        rows.bytes[mine] = 0
        rows.bytes[mine, 0] = _ZERO
    negative = (rows.column(0) == _MINUS) if span.minus else None
    checked = _check(rows, negative)
    if checked is None:
        return None
    dot_col, located = checked
    tally[0] += located
    tally[1] += 0 if negative is None else int(np.count_nonzero(negative))
    rows.to_digits(negative, dot_col)
    return rows, negative, dot_col


def _start(span: Span) -> tuple[np.ndarray, list[bytes]] | None:
    """Exponent tokens, after checking that the text holds nothing but numbers."""
    hard, texts = np.zeros(0, np.int64), list[bytes]()
    if any(span.holds(c) for c in (b"e", b"E", b"+")):
        found = _hard(span)
        if found is None:
            return None
        hard, texts = found
    marks = sum(t.count(b"e") + t.count(b"E") + t.count(b"+") for t in texts)
    if span.digits + span.dots + span.minus + marks != int(span.lengths.sum()):
        return None  # a byte that belongs in no number
    return hard, texts


def _balanced(span: Span, tally: list[int], texts: list[bytes]) -> bool:
    """Every dot and every "-" of the text sits where a number may have one."""
    return (
        tally[0] + sum(t.count(b".") for t in texts) == span.dots
        and tally[1] + sum(t.count(b"-") for t in texts) == span.minus
    )


def _floats(span: Span, dtype: np.dtype[np.generic]) -> np.ndarray | None:
    longest = int(span.lengths.max())
    started = None if longest > MAX_TOKEN else _start(span)
    if started is None:
        return None
    hard, texts = started
    width = max((longest + 7) // 8 * 8, 8)
    count = len(span.starts)
    result = np.empty(count, dtype)
    redo: list[np.ndarray] = [hard]
    tally = [0, 0]
    for first in range(0, count, _TOKEN_CHUNK):
        last = min(first + _TOKEN_CHUNK, count)
        chunk = _chunk(span, first, last, width, hard, tally)
        if chunk is None:
            return None
        redo.append(_float_values(*chunk, result[first:last]) + first)
    if not _balanced(span, tally, texts):
        return None
    again = np.unique(np.concatenate(redo))
    if len(again) * _MAX_HARD_SHARE > count:
        return None
    if len(again):
        exact = np.array([float(_token(span, i)) for i in again.tolist()])
        with np.errstate(over="ignore", invalid="ignore"):
            result[again] = exact.astype(dtype)
    return result


def _float_values(
    rows: _Rows, negative: np.ndarray | None, dot_col: np.ndarray, out: np.ndarray
) -> np.ndarray:
    """Fill ``out``; return the rows too close to a rounding boundary to trust (re-parse)."""
    width = rows.width
    dotted = dot_col >= 0
    # value = positional digits / 10**(width - 1 - dot column), except that the integer
    # digits, left of the dot, sit one place too high (the dot takes a column).
    lead = 0 if negative is None else negative.astype(np.int64)
    int_digits = np.where(dotted, dot_col - lead, 0)
    left = np.zeros(rows.count)
    for k in range(int(int_digits.max(initial=0))):
        take = int_digits > k
        left += rows.column(k, negative) * take * _POW10[width - 1 - k - lead]
    groups = _digit_groups(rows)
    value = groups[:, 0].astype(np.float64)
    for k in range(1, groups.shape[1]):
        value *= 1e8
        value += groups[:, k]
    left *= 0.9
    value -= left
    value /= _POW10[np.where(dotted, width - 1 - dot_col, width - rows.lengths)]
    if negative is not None:
        np.negative(value, out=value, where=negative)
    with np.errstate(over="ignore", invalid="ignore"):
        out[...] = value
        value *= 1.0 - _TOLERANCE
        low = value.astype(out.dtype)
        value *= (1.0 + _TOLERANCE) / (1.0 - _TOLERANCE)
        return np.flatnonzero(low != value.astype(out.dtype))
