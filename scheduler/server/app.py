"""The service's FastAPI application: the quota API, health and readiness."""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from quota.api import Clock, quota_router
from quota.store import Store


def create_app(store: Store, clock: Clock = time.time) -> FastAPI:
    app = FastAPI(title="slotwise", description="Placement, quota, MIG and overflow for Kubernetes ML platforms.")
    app.include_router(quota_router(store, clock))

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            with store.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure means not ready
            return JSONResponse({"status": "database unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready"})

    return app
