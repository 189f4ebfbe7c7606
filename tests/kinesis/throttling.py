"""An HTTP proxy in front of an emulator that throttles and expires iterators, as Kinesis does and neither
emulator does on its own: a fraction of GetRecords and PutRecords calls is answered
``ProvisionedThroughputExceededException`` (400) without reaching the emulator, a fraction of the
GetRecords calls ``ExpiredIteratorException`` (an iterator lives five minutes in Kinesis), and of the
other PutRecords calls a fraction of the entries is refused with the throttling code: those entries are
taken out of the call before it is forwarded, so that, as in Kinesis, a refused entry is not written."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import threading
import typing
from collections import Counter

import aiohttp
from aiohttp import web

from e2e.processes import free_port

JSON = "application/x-amz-json-1.1"
THROTTLED = {"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded (throttling proxy)"}
EXPIRED = {"__type": "ExpiredIteratorException", "message": "Iterator expired (throttling proxy)"}


class ThrottlingProxy:
    def __init__(self, target: str, p_call: float, p_entry: float, p_expired: float = 0.0, seed: int = 1):
        """``target``: the emulator's endpoint; ``p_call``: the fraction of GetRecords and PutRecords calls
        refused whole; ``p_entry``: the fraction of the entries of the other PutRecords calls refused;
        ``p_expired``: the fraction of GetRecords calls whose iterator is said to have expired."""
        self.target, self.p_call, self.p_entry, self.p_expired = target, p_call, p_entry, p_expired
        self.rng = random.Random(seed)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.counts: Counter = Counter()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="throttling-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    def __enter__(self) -> ThrottlingProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            if self._session is not None:
                await self._session.close()
        with contextlib.suppress(Exception):  # stopping anyway
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _forward(self, request: web.Request, body: bytes) -> tuple[int, bytes]:
        # the signature covers the body; the emulators do not check it, so a changed body passes
        headers = {key: value for key, value in request.headers.items() if key.lower() not in ("host", "content-length")}
        async with self._session.post(f"{self.target}{request.path_qs}", data=body, headers=headers) as answer:
            return answer.status, await answer.read()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        if operation in ("GetRecords", "PutRecords") and self.rng.random() < self.p_call:
            self.counts[f"{operation} throttled"] += 1
            return web.Response(status=400, body=json.dumps(THROTTLED).encode(), content_type=JSON)
        if operation == "GetRecords" and self.rng.random() < self.p_expired:
            self.counts["GetRecords expired"] += 1
            return web.Response(status=400, body=json.dumps(EXPIRED).encode(), content_type=JSON)
        if operation != "PutRecords" or not self.p_entry:
            status, payload = await self._forward(request, body)
            return web.Response(status=status, body=payload, content_type=JSON)
        call = json.loads(body)
        refused = [self.rng.random() < self.p_entry for _ in call["Records"]]
        kept = [entry for entry, no in zip(call["Records"], refused) if not no]
        self.counts["entries refused"] += sum(refused)
        results: typing.Iterator[dict] = iter(())
        if kept:
            status, payload = await self._forward(request, json.dumps({**call, "Records": kept}).encode())
            if status != 200:
                return web.Response(status=status, body=payload, content_type=JSON)
            results = iter(json.loads(payload)["Records"])
        merged = [{"ErrorCode": THROTTLED["__type"], "ErrorMessage": THROTTLED["message"]} if no else next(results)
                  for no in refused]
        answer = {"FailedRecordCount": sum(refused), "Records": merged}
        return web.Response(status=200, body=json.dumps(answer).encode(), content_type=JSON)
