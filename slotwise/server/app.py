"""The service's FastAPI application: the quota API, the scheduler extender, the admission
webhooks, MIG layout reports, metrics, health and readiness."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from starlette.types import ASGIApp, Receive, Scope, Send

from mig.store import MemoryLayoutStore, ReportedFleet
from quota.store import Store
from quota.store.errors import database_reason
from scheduler.model.cluster import WorkloadKind
from scheduler.placement.classes import DEFAULT_CLASSES, WorkloadClass
from slotwise.server.agent_identity import AgentIdentity
from slotwise.server.cache import ClusterCache
from slotwise.server.extender import MAX_BODY_BYTES, extender_router
from slotwise.server.metrics import ServiceMetrics, metrics_router
from slotwise.server.mig_api import mig_router
from slotwise.server.quota_api import (
    BEARER,
    MAX_CONFIG_BYTES,
    MAX_DOCUMENT_VALUES,
    Clock,
    quota_router,
    token_holder,
)
from slotwise.server.webhooks import webhook_router


class Refusal(BaseModel):
    """What every refusal (4xx, or 503 while the database is away) answers."""

    detail: Any = Field(description="What was wrong: a message; for an invalid quota configuration "
                                    "{message, problems}; for a malformed field, FastAPI's list of errors.")


_REFUSED = {400: "The request cannot be read or the change was refused.", 401: "No token, or an unknown one.",
            403: "The token may not do this.", 404: "No such object.", 409: "It already exists.",
            413: f"The body is larger than {MAX_BODY_BYTES // 2**20} MiB (a quota configuration: "
                 f"{MAX_CONFIG_BYTES // 2**20} MiB), or the configuration holds more than {MAX_DOCUMENT_VALUES:,} values.",
            422: "The body or a parameter is invalid; every problem is listed.",
            503: "The database is unavailable, or the API server cannot review a token now; nothing was changed."}


def _refusals(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI entries for the refusals a router's operations may give."""
    return {code: {"model": Refusal, "description": _REFUSED[code]} for code in codes}


def _refresh(metrics: ServiceMetrics, store: Store, now: float, mig: ReportedFleet | None) -> None:
    """Quota gauges, burst spend against each pool's tightest budget, as the store holds them, and
    the MIG instances free, as the node reports say."""
    if mig is not None:
        metrics.set_mig_free(mig().placeable())
    ledger = store.ledger()
    metrics.update_quota(ledger)
    at = datetime.fromtimestamp(now, UTC)
    for pool in ledger.config.pools:
        budget = store.budget_left(pool.name, at) if pool.budget else None
        if budget is not None:
            left, limit = budget
            metrics.set_burst_spend(pool.name, limit - left)
            metrics.budget.update(pool.name, left, limit)


def _scraper(store: Store, token: str | None) -> Callable[..., None]:
    """Who may read ``/metrics``, whose gauges name every pool and what it uses: the metrics token
    (checked first, so scrapes need no database) or an admin token."""

    def check(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if bearer is None:
            raise HTTPException(401, "send Authorization: Bearer <token>, the metrics token or an admin token",
                                headers={"WWW-Authenticate": "Bearer"})
        if token is not None and hmac.compare_digest(bearer.credentials.encode(), token.encode()):
            return
        who = token_holder(store, bearer.credentials)
        if who.role != "admin":
            raise HTTPException(403, f"token {who.name} may not read the metrics: use the metrics token or an admin token")

    return check


#: The ASGI scope key the client-certificate listener sets on every request it serves.
VERIFIED_CALLER = "slotwise.verified_caller"
_FOR_VERIFIED_CALLERS = ("/extender", "/webhooks")


def verified_callers(app: ASGIApp) -> ASGIApp:
    """``app`` as the listener that requires a client certificate serves it: the TLS handshake
    has verified the caller before any request arrives."""
    async def marked(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, VERIFIED_CALLER: True}, receive, send)
    return marked


class _VerifiedCallersOnly:
    """The webhooks and the extender for verified callers only: elsewhere a 403 that names the
    port to call, before the body is read. A plain ASGI middleware, as the extender's latency counts."""

    def __init__(self, app: ASGIApp, port: int):
        self.app = app
        self.refusal = JSONResponse({"detail": f"the webhooks and the extender answer on port {port} only, to callers "
                                               "presenting a client certificate the service's client CA signed"},
                                    status_code=403)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get(VERIFIED_CALLER) and scope["path"].startswith(_FOR_VERIFIED_CALLERS):
            await self.refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def create_app(
    store: Store,
    clock: Clock = time.time,
    *,
    cache: ClusterCache | None = None,
    managed: Collection[str] | Callable[[str], bool] = (),
    metrics: ServiceMetrics | None = None,
    mig_token: str | None = None,
    mig_fleet: ReportedFleet | None = None,
    classes: Mapping[WorkloadKind, WorkloadClass] = DEFAULT_CLASSES,
    metrics_token: str | None = None,
    mig_agents: AgentIdentity | None = None,
    client_cert_port: int | None = None,
    profile: str = "default",
) -> FastAPI:
    """``cache``: the cluster the extender decides on (none: no extender); ``managed``: the
    namespaces whose pods the webhooks gate; ``mig_token``: the bearer token node agents send
    their MIG layouts with, or ``mig_agents``: the agents' own tokens, each for its node (neither:
    no MIG endpoint); ``mig_fleet``: the fleet their reports make,
    over the store that keeps them (default with a token: a new in-memory one), which the extender
    places MIG pods on and the ``slotwise_mig_slices_free`` gauge counts; ``metrics_token``: the
    bearer token Prometheus scrapes ``/metrics`` with (an admin token works too);
    ``client_cert_port``: the webhooks and the extender answer only requests that listener
    verified a client certificate for (:func:`verified_callers` marks them); ``profile``: the
    placement profile the extender scores with."""
    reports = mig_token is not None or mig_agents is not None
    if reports and mig_fleet is None:
        mig_fleet = ReportedFleet(MemoryLayoutStore())
    # One bound on every body, read or streamed (a 413), so no endpoint holds more than this in memory.
    app = FastAPI(title="slotwise", description="Placement, quota, MIG and overflow for Kubernetes ML platforms.",
                  max_body_size=MAX_BODY_BYTES)
    metrics = metrics or ServiceMetrics()
    if client_cert_port is not None:
        app.add_middleware(_VerifiedCallersOnly, port=client_cert_port)
    if cache is not None:  # first: routes are matched in order, and the extender is called twice per pod
        cache.on_rebuild = metrics.snapshot_rebuilt
        app.include_router(extender_router(cache, profile, classes=classes, metrics=metrics, mig=mig_fleet))
    app.include_router(quota_router(store, clock), responses=_refusals(400, 401, 403, 404, 409, 413, 422, 503))
    app.include_router(webhook_router(managed, store=store, clock=clock, metrics=metrics), responses=_refusals(400, 413))
    app.include_router(metrics_router(metrics, refresh=lambda: _refresh(metrics, store, clock(), mig_fleet)),
                       dependencies=[Depends(_scraper(store, metrics_token))])
    if reports and mig_fleet is not None:
        app.include_router(mig_router(mig_fleet.store, mig_token, mig_agents),
                           responses=_refusals(400, 401, 403, 404, 413, 422, 503))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        """FastAPI's 422, whose errors echo the input; but Python's JSON parser reads NaN and
        Infinity, which JSON cannot write back: those replies leave the input out, not a 500."""
        try:
            return await request_validation_exception_handler(request, exc)
        except ValueError:
            errors = [{k: v for k, v in error.items() if k != "input"} for error in exc.errors()]
            return await request_validation_exception_handler(request, RequestValidationError(errors))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def database_unavailable(request: Request, exc: DBAPIError) -> JSONResponse:
        """What needs the database answers 503 while it cannot be reached (the driver's
        operational and interface errors); the rest keeps working."""
        return JSONResponse({"detail": f"the database is unavailable: {database_reason(exc)}"}, status_code=503)

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Ready once the cluster is followed: the webhooks and the extender need nothing else. A
        database outage is said here but keeps the pod in the Service (only the quota API, the
        admission loop and validation's quota check need it; mutate never does)."""
        parts: dict[str, str] = {}
        try:
            with store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except DBAPIError as exc:
            parts["database"] = f"unavailable: {database_reason(exc)}"
        if cache is not None and cache.kube is None and not cache.synced:
            return JSONResponse({"status": "no cluster to follow: start slotwise serve with --in-cluster, --kubeconfig, "
                                           "or --nodes and --pods for a dry run"}, status_code=503)
        if cache is not None and not cache.synced:
            return JSONResponse({"status": "cluster cache not synced yet"}, status_code=503)
        return JSONResponse({"status": "ready", **parts})

    return app
