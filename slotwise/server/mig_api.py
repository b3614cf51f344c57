"""The control plane's end of the node agent: ``POST /mig/nodes/{node}`` stores a node's layout.

A FastAPI router for the live service to mount. Requests carry ``Authorization: Bearer <token>``;
bodies are :class:`~mig.report.NodeReport` documents, checked against the catalog, and a bad one
is answered 422 with what is wrong, in one line.
"""

from __future__ import annotations

import hmac
import json
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from mig.report import NodeReport, error_text
from mig.store import LayoutStore

#: Declares the bearer scheme in the OpenAPI schema; the token is checked below, with its own message.
BEARER = HTTPBearer(scheme_name="MigToken", auto_error=False,
                    description="The node agents' token (`slotwise serve --mig-token-file`).")


def mig_router(store: LayoutStore, token: str) -> APIRouter:
    """Routes under ``/mig``; every request must present ``token`` as a bearer token."""
    if not token:
        raise ValueError("the MIG report endpoint needs a token")

    def authorise(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if bearer is None or not hmac.compare_digest(bearer.credentials.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

    router = APIRouter(prefix="/mig", tags=["mig"], dependencies=[Depends(authorise)])

    # The body is read by hand (a bad one is one line of 422), so the schema names it here;
    # GET /mig/nodes/{node} answers the same model, which puts it among the schema's components.
    @router.post("/nodes/{node}", status_code=204, openapi_extra={"requestBody": {
        "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NodeReport"}}}}})
    async def report(node: str, request: Request) -> None:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested thousands deep
            raise HTTPException(400, "body is not JSON") from None
        try:
            document = NodeReport.model_validate(body)
        except ValidationError as exc:
            raise HTTPException(422, error_text(exc)) from None
        if document.node != node:
            raise HTTPException(422, f"body reports node {document.node!r} but was posted for {node!r}")
        store.put(document)

    @router.get("/nodes")
    def nodes() -> list[str]:
        return store.nodes()

    @router.get("/nodes/{node}")
    def layout(node: str) -> NodeReport:
        found = store.get(node)
        if found is None:
            raise HTTPException(404, f"no layout reported for node {node!r}")
        return found

    return router
