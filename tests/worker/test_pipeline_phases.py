"""Request phases that answer, pass, or have to wait; response phases run exactly once."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import Awaitable
from pathlib import Path

from bext.config.load import parse_config
from bext.http.body import EMPTY_BODY
from bext.http.message import Request, Response
from bext.worker.pipeline import Pipeline

SITE = '[[route_rules]]\npattern = "/**"\nrespond = { status = 200, body = "routed" }\n'


def pipeline() -> tuple[Pipeline, list[str]]:
    pipe = Pipeline(parse_config(tomllib.loads(SITE), base_dir=Path("/srv")))
    seen: list[str] = []

    def mark(request: Request, response: Response) -> Response:
        seen.append(response.body.decode())
        return response

    pipe.response_phases = (mark,)
    return pipe, seen


def request(target: bytes = b"/x") -> Request:
    return Request("GET", target, [], "1.1", "http", "127.0.0.1", 1, 80, EMPTY_BODY, 0.0)


def answer(pipe: Pipeline, req: Request) -> Response:
    result = pipe.handle(req)
    if isinstance(result, Response):
        return result

    async def wait(pending: Awaitable[Response]) -> Response:
        return await pending

    return asyncio.run(wait(result))


def test_a_passing_phase_leads_to_the_route() -> None:
    pipe, seen = pipeline()
    pipe.request_phases = (lambda r: None,)
    assert answer(pipe, request()).body == b"routed" and seen == ["routed"]


def test_a_phase_that_answers_at_once_skips_the_route() -> None:
    pipe, seen = pipeline()
    pipe.request_phases = (lambda r: Response(429, [], b"slow down"),)
    response = answer(pipe, request())
    assert response.status == 429 and seen == ["slow down"]
    assert request().route is None


def test_waiting_phases_pass_or_answer_and_response_phases_run_once() -> None:
    async def later(value: Response | None) -> Response | None:
        await asyncio.sleep(0)
        return value

    pipe, seen = pipeline()
    pipe.request_phases = (lambda r: later(None), lambda r: later(None))
    req = request()
    assert answer(pipe, req).body == b"routed" and seen == ["routed"]
    assert req.route is not None

    pipe, seen = pipeline()
    pipe.request_phases = (lambda r: later(None), lambda r: later(Response(403, [], b"no")))
    assert answer(pipe, request()).status == 403 and seen == ["no"]


def test_admin_answers_before_the_request_phases() -> None:
    pipe, seen = pipeline()
    pipe.request_phases = (lambda r: Response(500, [], b"must not run"),)
    response = answer(pipe, request(b"/__bext/health"))
    assert response.body == b"ok\n" and seen == ["ok\n"]
