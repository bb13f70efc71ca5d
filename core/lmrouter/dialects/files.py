"""Files in OpenAI's two dialects, as IR parts: Chat Completions ``file`` and ``input_audio``
parts and Responses ``input_file`` items share these shapes.

Wire facts relied on (OpenAI's API reference): ``file.file_data`` is the file's base64 content,
which OpenAI's own examples send as a data URL (``data:application/pdf;base64,…``) — both forms
are accepted; ``filename`` names it; ``file_id`` is a file uploaded to OpenAI, readable by OpenAI
alone. ``input_audio`` is ``{data: base64, format: "wav" | "mp3"}``. Responses adds
``file_url``.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse

from lmrouter import ir
from lmrouter.errors import invalid_request

AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg"}


def data_url(url: str) -> tuple[str, str] | None:
    """``data:<type>[;base64],<payload>`` as (media type, base64 data); ``None`` when ``url``
    is not a data URL. A percent-encoded payload is re-encoded as base64, which the IR keeps."""
    if not url.startswith("data:"):
        return None
    header, comma, payload = url[5:].partition(",")
    if not comma:
        return None
    media_type, *options = header.split(";")
    if options and options[-1].strip().lower() == "base64":
        data = "".join(payload.split())  # base64 may be wrapped across lines
    else:
        data = base64.b64encode(urllib.parse.unquote_to_bytes(payload)).decode()
    return media_type.strip().lower(), data


def _check_base64(data: str, param: str) -> None:
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_request(f"`{param}` does not hold valid base64 data.", param) from None


def openai_file(
    *,
    file_data: str | None,
    file_id: str | None,
    filename: str | None,
    param: str,
    fields: str = "",
    file_url: str | None = None,
) -> ir.Image | ir.File:
    """A Chat ``file`` part's ``file`` object or a Responses ``input_file`` (``param`` is the
    part's path, ``fields`` where its fields are under it: ``.file`` for Chat). The type comes
    from the data URL, else the file name, else PDF (the type OpenAI documents for files)."""
    name = filename or ""
    where = param + fields
    if file_id:
        media_type = ir.guess_type(name)
        return ir.File(
            file_id=file_id, file_owner="openai", name=name, media_type=media_type, param=param
        )
    if file_data:
        parsed = data_url(file_data)
        if parsed is None:
            media_type = ir.guess_type(name) or "application/pdf"
            data = "".join(file_data.split())
        else:
            media_type, data = parsed
            media_type = media_type or ir.guess_type(name) or "application/pdf"
        _check_base64(data, f"{where}.file_data")
        return ir.media_part(media_type, data=data, name=name, param=param)
    if file_url:
        if not file_url.startswith(("https://", "http://")):
            field = f"{where}.file_url"
            raise invalid_request(f"`{field}` must be an http(s) URL.", field)
        media_type = ir.guess_type(name or file_url.split("?", 1)[0]) or "application/pdf"
        return ir.media_part(media_type, url=file_url, name=name, param=param)
    what = "file_data, file_url or file_id" if file_url is not None else "file_data or file_id"
    raise invalid_request(f"`{where}` needs {what}.", where)


def openai_audio(data: str, fmt: str, param: str) -> ir.File:
    """An ``input_audio`` part (``param`` is the part's path)."""
    media_type = AUDIO_TYPES.get(fmt)
    where = f"{param}.input_audio"
    if media_type is None:
        raise invalid_request(
            f"`{where}.format` must be 'wav' or 'mp3', not {fmt!r}.", f"{where}.format"
        )
    _check_base64(data, f"{where}.data")
    return ir.File(media_type=media_type, data=data, param=param)
