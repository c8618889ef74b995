"""Protobuf encoder choice, measured: hubbub's hand-written codec vs the ``protobuf``
package (upb backend) with protoc's classes of client.proto.

The hot message is the publication push (encoded once per channel batch for
every Protobuf subscriber); commands are decoded once each. For upb, a push
is built as message objects and serialized, then length-prefixed; a command is
parsed into a message object (hubbub would then still have to convert it to
its Structs, not counted here). protoc's classes come from centrifuge-python's
package (the test extra), so this needs ``pip install -e '.[test]'``.

    python benchmarks/protobuf_codec.py
"""

from __future__ import annotations

import statistics
import timeit

import msgspec
from centrifuge.protocol import client_pb2 as pb
from google.protobuf.internal import api_implementation

from hubbub.protocol.codec import JSON
from hubbub.protocol.messages import ClientInfo, Publication
from hubbub.protocol.protobuf import PROTOBUF, encode_command
from hubbub.protocol.protowire import delimited, split_delimited

DATA = msgspec.json.encode({"text": "x" * 80, "n": 12345})
INFO = ClientInfo(user="user-42", client="0f4c1a2b-5d6e-4f70-8a9b-0c1d2e3f4a5b")
PUBLICATION = Publication(data=msgspec.Raw(DATA), info=INFO, offset=123456, tags={"k": "v"})
CHANNEL = "chat:index"
COMMAND = encode_command({"id": 7, "publish": {"channel": CHANNEL, "data": DATA}})


def upb_publication_push() -> bytes:
    info = pb.ClientInfo(user=INFO.user, client=INFO.client)
    pub = pb.Publication(data=DATA, info=info, offset=123456, tags={"k": "v"})
    body = pb.Reply(push=pb.Push(channel=CHANNEL, pub=pub)).SerializeToString()
    return delimited(body)


def upb_decode_command() -> pb.Command:
    command = pb.Command()
    for message in split_delimited(COMMAND):
        command.ParseFromString(message)
    return command


def measure(label: str, fn: object, number: int = 20000, repeat: int = 7) -> float:
    times = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    per_op = [t / number * 1e9 for t in times]
    median = statistics.median(per_op)
    print(f"  {label:42s} {median:8.0f} ns/op (min {min(per_op):.0f}, max {max(per_op):.0f})")
    return median


def main() -> None:
    print(f"protobuf package backend: {api_implementation.Type()}")
    # Both encode the same message (field order may differ: compare what upb reads back).
    reply = pb.Reply()
    reply.ParseFromString(split_delimited(PROTOBUF.publication_push(CHANNEL, PUBLICATION))[0])
    expected = pb.Reply()
    expected.ParseFromString(split_delimited(upb_publication_push())[0])
    assert reply == expected
    print("publication push (encode):")
    mine = measure("hubbub hand-written", lambda: PROTOBUF.publication_push(CHANNEL, PUBLICATION))
    upb = measure("protobuf (upb), message objects", upb_publication_push)
    measure("JSON (msgspec), for reference", lambda: JSON.publication_push(CHANNEL, PUBLICATION))
    print(f"  -> hand-written x{upb / mine:.2f} the speed of upb")
    print("publish command (decode):")
    mine = measure("hubbub hand-written, into Structs", lambda: PROTOBUF.decode_commands(COMMAND))
    upb = measure("protobuf (upb), message object only", upb_decode_command)
    print(f"  -> hand-written x{upb / mine:.2f} the speed of upb")


if __name__ == "__main__":
    main()
