"""Live codes' QR images as PNG files: fetched from WeCom once, kept, zipped for download.

WeCom hosts each contact way's QR image at its `qr_code` URL; what the image encodes is
WeCom's, so the image itself is fetched (through the WeCom client's HTTP session) rather
than drawn here.
"""

from __future__ import annotations

import io
import re
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from bot.errors import WeComError
from bot.wecom.client import NETWORK_ERROR, WeComClient

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_BYTES = 2_000_000  # WeCom's QR images are a few tens of kB
KEPT = 256  # images kept per process (a URL's image never changes)
_UNSAFE = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')

_lock = threading.Lock()
_kept: OrderedDict[str, bytes] = OrderedDict()


def qr_png(wecom: WeComClient, url: str) -> bytes:
    """Return the PNG at a live code's `qr_code` URL; raise WeComError when unavailable."""
    with _lock:
        found = _kept.get(url)
        if found is not None:
            _kept.move_to_end(url)
            return found
    body = wecom.download(url, max_bytes=MAX_BYTES)
    if not body.startswith(PNG_SIGNATURE):
        raise WeComError(NETWORK_ERROR, "the QR code is not a PNG image", api="download")
    with _lock:
        _kept[url] = body
        while len(_kept) > KEPT:
            _kept.popitem(last=False)
    return body


def file_name(name: str) -> str:
    """Return a channel name made safe as a file name (no path separators or controls)."""
    return _UNSAFE.sub("_", name).strip(" .") or "channel"


@dataclass(frozen=True)
class QrZip:
    """A zip of QR images, and the channels whose image could not be had."""

    data: bytes
    files: tuple[str, ...]
    missing: tuple[str, ...]


def qr_zip(wecom: WeComClient, codes: Sequence[tuple[str, str]]) -> QrZip:
    """Zip each (channel name, qr_code URL) as <name>.png; list the ones left out in a note."""
    buffer = io.BytesIO()
    files: list[str] = []
    missing: list[str] = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, url in codes:
            try:
                if not url:
                    raise WeComError(NETWORK_ERROR, "no QR code", api="download")
                image = qr_png(wecom, url)
            except WeComError:
                missing.append(name)
                continue
            member = f"{file_name(name)}.png"
            n = 2
            while member in files:
                member = f"{file_name(name)}-{n}.png"
                n += 1
            archive.writestr(member, image)
            files.append(member)
        if missing:
            note = "以下渠道的二维码未能从企业微信下载，请稍后重试：\n" + "\n".join(missing) + "\n"
            archive.writestr("未能下载.txt", note.encode("utf-8"))
    return QrZip(buffer.getvalue(), tuple(files), tuple(missing))
