"""The operational endpoints every service has: /healthz, /readyz and /metrics."""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from pydantic import SecretStr

ReadinessCheck = Callable[[], Awaitable[bool]]

CHECK_TIMEOUT_SECONDS = 3.0


async def _run(check: ReadinessCheck) -> bool:
    try:
        return await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT_SECONDS)
    except Exception:  # noqa: BLE001 - any failure of a probe means "not ready"
        return False


def ops_router(
    *,
    service: str,
    checks: Mapping[str, ReadinessCheck],
    metrics_token: SecretStr | None = None,
    detail: Callable[[], Mapping[str, Any]] | None = None,
    degraded: Callable[[], Sequence[str]] | None = None,
    reasons: Mapping[str, Callable[[], str | None]] | None = None,
) -> APIRouter:
    """Return a router with liveness, readiness (running ``checks``) and Prometheus metrics.

    Health and readiness are open (load balancers and orchestrators call them). With a
    ``metrics_token`` (``TRIAGE_METRICS_TOKEN``), ``/metrics`` wants it as a bearer token, as
    Prometheus sends it with ``authorization: {credentials: ...}`` in a scrape job.
    ``detail`` adds what the service serves to the readiness answer (under ``serving``);
    ``degraded`` names parts that are failing while the service still serves (an IMAP
    mailbox): the answer is then 200 with status "degraded" and those names, so a load
    balancer keeps the service while the failure is visible. ``reasons`` say why a check
    fails, where its owner knows (Kafka's refused login): shown under ``reasons``.
    """
    router = APIRouter(tags=["operations"])
    serving = detail
    expected = f"Bearer {metrics_token.get_secret_value()}".encode() if metrics_token else None

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: dependencies reachable, model loaded")
    async def readyz() -> JSONResponse:
        names = list(checks)
        results = await asyncio.gather(*(_run(checks[n]) for n in names))
        detail = {n: ("ok" if ok else "failing") for n, ok in zip(names, results, strict=True)}
        ready = all(results)
        failing = list(degraded()) if degraded is not None else []
        body: dict[str, Any] = {
            "status": "not ready" if not ready else "degraded" if failing else "ready",
            "service": service,
            "checks": detail,
        }
        if failing:
            body["degraded"] = failing
        why = {
            name: reason
            for name, explain in (reasons or {}).items()
            if detail.get(name) == "failing" and (reason := explain()) is not None
        }
        if why:
            body["reasons"] = why
        if serving is not None:
            body["serving"] = dict(serving())
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={401: {"description": "TRIAGE_METRICS_TOKEN is set and was not given"}},
    )
    async def metrics(request: Request) -> Response:
        if expected is not None:
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse(
                    {"detail": "a bearer token is required for /metrics"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return router
