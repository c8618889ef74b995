"""Delta compression (Fossil) for subscribers that agreed to it on subscribe.

Rule 1 (the wire, as the SDKs decode it): once ``delta`` is agreed, every
publication the subscriber gets carries in ``data`` either the whole payload
or, with ``delta: true``, a Fossil patch that turns the previous publication's
payload into this one's. In the JSON protocol that data is a JSON *string*
holding the bytes (so a patch travels as text); in Protobuf it is the bytes.
Rule 2: a patch is made only for a publication published as a delta (API
``delta: true`` or the namespace's ``delta_publish``), only against the
publication delivered just before it on this node, and only sent when it is
smaller than the payload. History, recovery and every first publication after
a subscribe carry whole payloads, so a subscriber's base is always what it
last received.
Rule 3: ``DeltaFrames`` makes the patch of one publication once, and each
encoding (codec x whole/patch) once, for all the delta subscribers of a channel.
Rule 4 (binary payloads, protocol/payload.py): when the publication or the one
before it is ``Binary``, Protobuf subscribers get a patch over the exact bytes
(not aligned on characters), and JSON subscribers get the whole payload in its
JSON form: their base is that form, which need not be the exact bytes. A
payload that is not JSON raises ``NotJSON`` for a JSON subscriber (closed with
3506 by the caller).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from hubbub.protocol import fossil
from hubbub.protocol.codec import Codec
from hubbub.protocol.messages import Publication
from hubbub.protocol.payload import Binary, is_binary, json_text

#: The only delta type there is (``SubscribeRequest.delta``, ``allowed_delta_types``).
FOSSIL: Final = "fossil"

_encode: Final = msgspec.json.encode


def as_json_string(data: bytes) -> msgspec.Raw:
    """``data`` (UTF-8: JSON, or a text-aligned patch) as a JSON string literal."""
    return msgspec.Raw(_encode(data.decode()))


def whole(publication: Publication, codec: Codec) -> Publication:
    """``publication`` as a delta subscriber gets it whole (Rule 1); ``NotJSON`` for a
    JSON subscriber when its payload is not JSON (Rule 4)."""
    if codec.binary:
        return publication
    data = publication.data
    text = json_text(data) if is_binary(data) else data
    return msgspec.structs.replace(publication, data=as_json_string(bytes(text)))


def without_flags(publications: Sequence[Publication]) -> list[Publication]:
    """Publications as clients see them: ``delta`` marks how one was published (stored
    with it, so every node knows) and is never sent as such."""
    if not any(p.delta for p in publications):
        return list(publications)
    return [msgspec.structs.replace(p, delta=False) if p.delta else p for p in publications]


class DeltaFrames:
    """The pushes of one publication for a channel's delta subscribers (Rule 3)."""

    __slots__ = ("_binary", "_channel", "_frames", "_patch", "_previous", "_publication", "_raw")

    def __init__(
        self,
        channel: str,
        publication: Publication,
        previous: Publication | None,
        *,
        raw: bool = False,
    ) -> None:
        self._channel = channel
        self._publication = publication
        self._raw = raw  # sent as it is: a map key's removal has no payload to escape
        self._previous = previous  # None: no patch (not a delta publication, no base)
        # Rule 4: patches over exact bytes, for binary codecs only.
        self._binary = is_binary(publication.data) or (
            previous is not None and is_binary(previous.data)
        )
        self._patch: bytes | None = None
        self._frames: dict[tuple[Codec, bool], bytes] = {}

    def frame(self, codec: Codec, *, patch: bool) -> bytes:
        """The push for a subscriber with ``codec``; ``patch``: it holds the previous
        publication as its base."""
        patch = patch and (codec.binary or not self._binary) and self.patch() is not None
        key = (codec, patch)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._frames[key] = self._encode(codec, patch)
        return frame

    def patch(self) -> bytes | None:
        """The Fossil patch from the previous payload, or None when it is not worth it."""
        if self._previous is None:
            return None
        if self._patch is None:
            target = bytes(self._publication.data)
            patch = fossil.create(bytes(self._previous.data), target, text=not self._binary)
            if len(patch) >= len(target):
                self._previous = None  # a patch not smaller than the payload: send it whole
                return None
            self._patch = patch
        return self._patch

    def _encode(self, codec: Codec, patch: bool) -> bytes:
        publication = self._publication
        if self._raw:
            return codec.publication_push(self._channel, publication)
        if patch:
            data = self.patch()
            assert data is not None
            wire = Binary(data) if codec.binary else as_json_string(data)
            publication = msgspec.structs.replace(publication, data=wire, delta=True)
        else:
            publication = whole(publication, codec)
        return codec.publication_push(self._channel, publication)
