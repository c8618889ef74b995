"""Application payloads between Python values and embedded JSON (``msgspec.Raw``).

Rule: hooks see and return Python values; the wire and the proxies carry raw
JSON. A value that is already ``msgspec.Raw`` passes through unchanged.
``check_data`` is the one check of ``publication_data_format``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from hubbub.codes import Error
from hubbub.errors import ClientError

if TYPE_CHECKING:
    from hubbub.config.model import ChannelOptions, Config


def to_raw(value: Any) -> msgspec.Raw | None:
    """Application data (any JSON value) as an embedded JSON payload."""
    if value is None:
        return None
    if isinstance(value, msgspec.Raw):
        return value
    return msgspec.Raw(msgspec.json.encode(value))


def from_raw(raw: msgspec.Raw | None) -> Any:
    """An embedded JSON payload as a Python value for hooks (None when absent)."""
    if not raw:
        return None
    return msgspec.json.decode(raw)


def data_format(config: Config, options: ChannelOptions) -> str:
    """A namespace's ``publication_data_format``, else ``channel.publication_data_format``."""
    return options.publication_data_format or config.channel.publication_data_format


def check_data(fmt: str, data: msgspec.Raw | bytes | None) -> None:
    """Refuse (107) data that ``publication_data_format`` ``fmt`` does not allow:
    anything but JSON for "json" (a Protobuf client's bytes may be anything),
    anything but a JSON object for "json_object". Empty data is refused whatever
    the format: "binary" would allow it in Centrifugo, but a publication has no
    empty payload on hubbub's JSON wire."""
    if not data:
        raise ClientError(Error.BAD_REQUEST)
    if fmt in ("json", "json_object"):
        try:
            value = msgspec.json.decode(data)
        except msgspec.DecodeError:
            raise ClientError(Error.BAD_REQUEST) from None
        if fmt == "json_object" and not isinstance(value, dict):
            raise ClientError(Error.BAD_REQUEST)
