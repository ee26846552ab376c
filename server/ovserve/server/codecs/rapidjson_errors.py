"""OVMS's text for a body that is not valid JSON, for both of its JSON dialects (TFS v1, KServe v2).

OVMS parses REST bodies with rapidjson and answers (412 on v1, 400 on v2)::

    The file is not valid json - Error: Missing a comma or ']' after an array element. Offset: 3

ovserve parses with orjson; :func:`invalid_json_text` derives rapidjson's message
(``GetParseError_En``) and byte offset from orjson's error: exact for the common cases (empty
document, invalid value or literal, missing comma/colon/name, trailing content, bad escapes and
numbers, a document cut short).
"""

from __future__ import annotations

import orjson

PREFIX = "The file is not valid json"

# orjson message fragment -> rapidjson's message, first match wins.
_MESSAGES = (
    ("after document", "The document root must not be followed by other values."),
    ("string key", "Missing a name for object member."),
    ("':'", "Missing a colon after a name of object member."),
    ("',' or '}'", "Missing a comma or '}' after an object member."),
    ("',' or ']'", "Missing a comma or ']' after an array element."),
    ("escape", "Invalid escape character in string."),
    ("surrogate", "The surrogate pair in string is invalid."),
    ("control character", "Invalid encoding in string."),
    ("UTF-8", "Invalid encoding in string."),
    ("decimal point", "Miss fraction part in number."),
    ("exponent", "Miss exponent in number."),
)
_SPACE = b" \t\r\n"


def invalid_json_text(exc: orjson.JSONDecodeError, doc: bytes | bytearray) -> str:
    """``The file is not valid json - Error: <rapidjson message> Offset: <byte offset>``."""
    msg = str(exc.msg)
    # orjson counts characters; rapidjson's offset counts bytes.
    pos = len(doc.decode("utf-8", errors="replace")[: exc.pos].encode())
    text = "Invalid value."
    if "empty" in msg:
        text, pos = "The document is empty.", len(doc)
    elif "end of data" in msg:
        text, pos = _truncated_text(doc)
    elif msg.startswith("invalid literal"):
        literal = msg.rsplit("'", 2)[-2] if msg.count("'") >= 2 else ""
        pos += _common_prefix(doc[pos : pos + len(literal)], literal.encode())
    elif "trailing comma" in msg:
        pos += 1
        while pos < len(doc) and doc[pos] in _SPACE:
            pos += 1
        if doc[pos : pos + 1] == b"}":
            text = "Missing a name for object member."
    else:
        text = next((ours for theirs, ours in _MESSAGES if theirs in msg), text)
    return f"{PREFIX} - Error: {text} Offset: {pos}"


def _truncated_text(doc: bytes | bytearray) -> tuple[str, int]:
    """rapidjson's message and offset for a document that ends too early (a cut body or a too
    small ``Inference-Header-Content-Length``), from what the prefix leaves open."""
    stack: list[int] = []  # ord("{") / ord("[") of the open containers
    last = "value"  # the last token: open, comma, colon, key, value
    in_string = escape = is_key = False
    scalar_start = -1  # where the number or literal the document ends in starts
    for i, byte in enumerate(doc):
        if in_string:
            if escape:
                escape = False
            elif byte == 0x5C:  # backslash
                escape = True
            elif byte == 0x22:
                in_string = False
                last = "key" if is_key else "value"
            continue
        scalar_start = -1 if byte in b'{}[],:" \t\r\n' else scalar_start
        if byte == 0x22:
            in_string = True
            is_key = bool(stack) and stack[-1] == 0x7B and last in ("open", "comma")
        elif byte in b"{[":
            stack.append(byte)
            last = "open"
        elif byte in b"}]":
            if stack:
                stack.pop()
            last = "value"
        elif byte == 0x2C:
            last = "comma"
        elif byte == 0x3A:
            last = "colon"
        elif byte not in _SPACE:
            if scalar_start < 0:
                scalar_start = i
            last = "value"
    end = len(doc)
    if in_string:
        if escape:
            return "Invalid escape character in string.", end - 1
        return "Missing a closing quotation mark in string.", end
    if scalar_start >= 0:  # the document ends inside a number or a literal
        scalar = doc[scalar_start:]
        if scalar[:1] in (b"t", b"f", b"n") or scalar == b"-":
            return "Invalid value.", end
        if scalar.endswith(b"."):
            return "Miss fraction part in number.", end
        if scalar[-1:] in (b"e", b"E", b"+", b"-"):
            return "Miss exponent in number.", end
    inside_object = bool(stack) and stack[-1] == 0x7B
    if last in ("open", "comma"):
        text = "Missing a name for object member." if inside_object else "Invalid value."
    elif last == "key":
        text = "Missing a colon after a name of object member."
    elif last == "colon" or not stack:
        text = "Invalid value."
    elif inside_object:
        text = "Missing a comma or '}' after an object member."
    else:
        text = "Missing a comma or ']' after an array element."
    return text, end


def _common_prefix(a: bytes | bytearray, b: bytes) -> int:
    n = 0
    while n < len(a) and n < len(b) and a[n] == b[n]:
        n += 1
    return n
