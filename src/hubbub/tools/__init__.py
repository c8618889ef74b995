"""Tools that drive a server from the outside: the ``hubbub bench`` load generator.

Rule: tools talk to a server only through its wire protocols (WebSocket client
protocol, HTTP API, a bare WebSocket in plain mode) and the operating system
(/proc, subprocesses); they never import the hub, server or engines, so they
measure hubbub exactly as they would measure any other server.
"""
