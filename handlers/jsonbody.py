"""Read a request body as JSON with precise 4xx answers for every way it can be wrong."""

from __future__ import annotations

import json
from typing import Any

from flask import abort, request

_CHUNK = 1 << 16


def read_body(limit: int) -> bytes:
    """Return the body, answering 413 once it passes `limit` bytes (chunked bodies too)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        abort(413, description=f"请求体超过 {limit} 字节 / body over {limit} bytes")
    parts: list[bytes] = []
    size = 0
    while True:
        # request.stream ends a chunked body where the server says it ends.
        chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
        if size > limit:
            abort(413, description=f"请求体超过 {limit} 字节 / body over {limit} bytes")
    return b"".join(parts)


def json_body(limit: int, *, allow_empty: bool = False) -> Any:
    """Parse the body as JSON; 400 for invalid or too deeply nested JSON, 413 when too big.

    With `allow_empty`, an empty body is None rather than a 400.
    """
    raw = read_body(limit)
    if allow_empty and not raw.strip():
        return None
    try:
        return json.loads(raw)
    except RecursionError:
        abort(400, description="JSON 嵌套过深 / JSON nested too deeply")
    except ValueError:  # also UnicodeDecodeError: not UTF-8
        abort(400, description="请求体不是有效的 JSON / body is not valid JSON")
