"""RFC 6455 and RFC 7692 without I/O: handshakes, frames and permessage-deflate, for every role.

Rule: this package is the one WebSocket codec of hubbub. The server, the load
generator (``hubbub bench``), the conformance tool (``hubbub audit``) and the
tests all judge handshakes (``handshake``), read and build frames (``frames``)
and compress messages (``deflate``) with it; nothing here touches a socket, a
loop or the hub.
"""
