"""A small synchronous client of a running application's HTTP APIs (ingress, egress, admin), for the
CLI and for scripts: ``RuntimeClient(admin="http://127.0.0.1:8081").parked()``."""

from __future__ import annotations

import http.client
import json
import typing
from dataclasses import dataclass
from urllib.parse import quote, urlsplit


class Unreachable(Exception):
    """Nothing answers at the API's address; the message says which and what to check."""


class ApiError(Exception):
    """The API answered with an error status; the message is its reason."""

    def __init__(self, status: int, reason: str):
        super().__init__(f"HTTP {status}: {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str


def _path(address: str) -> str:
    """``ns/type/id`` -> ``/ns/type/id`` (the id may contain ``/``)."""
    parts = address.split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{address!r} is not an address: write namespace/type/id, e.g. example/person/Bob")
    return "/" + "/".join(quote(p, safe="") for p in parts)


class RuntimeClient:
    def __init__(self, *, ingress: str = "http://127.0.0.1:8090", egress: str = "http://127.0.0.1:8091",
                 admin: str = "http://127.0.0.1:8081", token: str | None = None, timeout: float = 30.0):
        self.ingress, self.egress, self.admin = ingress, egress, admin
        self.token = token
        self.timeout = timeout

    # -- ingress and egress -------------------------------------------------------------------------

    def send(self, address: str, typename: str, body: bytes, *, wait: float | None = None,
             key: str | None = None) -> Answer:
        """Sends a message; with ``wait``, returns the function's reply (request/reply)."""
        headers = {"Content-Type": f"application/vnd.{typename}"}
        if key:
            headers["Idempotency-Key"] = key
        query = f"?wait={wait:g}" if wait else ""
        return self._request(self.ingress, "PUT", _path(address) + query, body, headers,
                             timeout=self.timeout + (wait or 0), ok=(200, 202))

    def take(self, topic: str, wait: float = 0) -> bytes | None:
        """The next record of a playground egress topic (None: none came within ``wait`` seconds)."""
        answer = self._request(self.egress, "GET", f"/{quote(topic, safe='')}" + (f"?wait={wait:g}" if wait else ""),
                               timeout=self.timeout + wait, ok=(200, 404))
        if answer.status == 404:
            if answer.body:  # a reason: an unknown topic, not an empty one
                raise ApiError(404, answer.body.decode(errors="replace").strip())
            return None
        return answer.body

    # -- admin --------------------------------------------------------------------------------------

    def state(self, address: str) -> dict[str, typing.Any]:
        return self._json("GET", "/state" + _path(address))

    def set_state(self, address: str, values: dict[str, typing.Any]) -> dict[str, typing.Any]:
        return self._json("PUT", "/state" + _path(address), {name: {"value": v} for name, v in values.items()})

    def delete_state(self, address: str, name: str | None = None) -> dict[str, typing.Any]:
        return self._json("DELETE", "/state" + _path(address) + (f"?name={quote(name)}" if name else ""))

    def parked(self, after: str = "", limit: int = 100) -> list[dict[str, typing.Any]]:
        """A page of the parked addresses after the address ``after``, in order (shorter than ``limit``: the last)."""
        return self._json("GET", f"/parked?after={quote(after, safe='')}&limit={limit}")

    def resume(self, address: str, skip: bool = False) -> dict[str, typing.Any]:
        return self._json("POST", "/parked" + _path(address) + ("/skip" if skip else "/resume"))

    def dead_letters(self, after: int = 0, limit: int = 100) -> list[dict[str, typing.Any]]:
        return self._json("GET", f"/dead-letters?after={after}&limit={limit}")

    def replay_dead_letter(self, seq: int) -> dict[str, typing.Any]:
        """Sends dead letter ``seq`` again to its target: ``{"seq", "target", "replayed"}``, ``replayed``
        False (and ``already_replayed``) when it was replayed before, for it is delivered once."""
        return self._json("POST", f"/dead-letters/{seq}/replay", ok=(200, 202))

    def savepoint(self, path: str, stop: bool = False, timeout: float = 3600) -> dict[str, typing.Any]:
        """Takes a savepoint at ``path`` (as the runtime's machine sees it, or a URL) and gives its manifest."""
        return self._json("POST", "/savepoints", {"path": path, "stop": stop}, timeout=timeout, ok=(201,))

    def _json(self, method: str, path: str, body: typing.Any = None, *, timeout: float | None = None,
              ok: tuple[int, ...] = (200,)) -> typing.Any:
        data = b"" if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if body else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        answer = self._request(self.admin, method, path, data, headers, timeout=timeout, ok=ok)
        return json.loads(answer.body)

    # -- HTTP ---------------------------------------------------------------------------------------

    def _request(self, base: str, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                 *, timeout: float | None = None, ok: tuple[int, ...] = (200,)) -> Answer:
        parts = urlsplit(base)
        connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80,
                                                timeout=timeout or self.timeout)
        try:
            connection.request(method, parts.path.rstrip("/") + path, body=body or None, headers=headers or {})
            response = connection.getresponse()
            answer = Answer(response.status, response.read(), response.headers.get("Content-Type", ""))
        except (ConnectionRefusedError, TimeoutError, OSError) as e:
            raise Unreachable(
                f"nothing answers at {base} ({e.strerror or e}): is `pystatefun run` running, and is this its "
                "address? (see the addresses it logs at start)"
            ) from None
        finally:
            connection.close()
        if answer.status not in ok:
            raise ApiError(answer.status, _reason(answer))
        return answer


def _reason(answer: Answer) -> str:
    text = answer.body.decode(errors="replace").strip()
    if answer.content_type.startswith("application/json"):
        try:
            return json.loads(text).get("error", text)
        except (ValueError, AttributeError):
            pass
    return text
