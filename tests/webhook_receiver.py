"""A webhook receiver, run as its own process: checks signatures as the README says.

    python -m tests.webhook_receiver --port P --secret S --out events.jsonl

The signature check is the README's own snippet (the ``verify_webhook`` code
block of the Webhooks section, executed here), so the documented way of
verifying is the one the tests prove. A POST with a bad signature is
answered 401 and logged to ``<out>.rejected``; a good one appends each event
as a JSON line to ``<out>`` (flushed before the 200) and answers 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import Any

from aiohttp import web

README = Path(__file__).parents[1] / "README.md"


def readme_verifier() -> Any:
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    [code] = [b for b in blocks if "def verify_webhook(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md (verify_webhook)", "exec"), namespace)
    return namespace["verify_webhook"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    verify_webhook = readme_verifier()
    out = Path(args.out)
    rejected = Path(args.out + ".rejected")

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        timestamp = request.headers.get("X-Hubbub-Timestamp", "")
        signature = request.headers.get("X-Hubbub-Signature", "")
        if not verify_webhook(args.secret, body, timestamp, signature):
            with rejected.open("a") as file:  # noqa: ASYNC230 (written before the answer)
                file.write(json.dumps({"signature": signature}) + "\n")
            return web.Response(status=401, text="bad signature")
        events = json.loads(body)["events"]
        with out.open("a") as file:  # noqa: ASYNC230 (written before the answer)
            for event in events:
                file.write(json.dumps(event) + "\n")
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application()
        app.router.add_post("/hooks", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", args.port).start()
        print(json.dumps({"port": args.port}), flush=True)
        await asyncio.Event().wait()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
