"""hubbub as an ASGI application: mount it in FastAPI, Starlette, Django or any ASGI server.

    from hubbub import Hub, load_config
    from hubbub.asgi import create_asgi_app

    hub = Hub(load_config("config.json").config)
    realtime = create_asgi_app(hub)
    app = FastAPI(lifespan=realtime.lifespan)   # optional: graceful 3001 on shutdown
    app.mount("/rt", realtime)                  # /rt/connection/websocket, /rt/api/...

Under ASGI the ASGI server (uvicorn, hypercorn, daphne) owns the WebSocket
framing; hubbub adapts its messages to the hub (see ``websocket.py``).
"""

from hubbub.asgi.app import HubAsgiApp, create_asgi_app

__all__ = ["HubAsgiApp", "create_asgi_app"]
