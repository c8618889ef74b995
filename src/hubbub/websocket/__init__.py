"""RFC 6455 (and, later, RFC 7692) without I/O: frames and handshakes, for every role.

Rule: this package is the one WebSocket codec of hubbub. The server, the load
generator (``hubbub bench``), the conformance tool (``hubbub audit``) and the
tests all read and build frames and handshakes with it; nothing here touches
a socket, a loop or the hub.
"""
