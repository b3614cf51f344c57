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
from kubernetes.client import ApiException
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from urllib3.exceptions import HTTPError

from mig.report import NodeReport, error_text
from mig.store import LayoutStore
from slotwise.server.agent_identity import AgentIdentity

#: Declares the bearer scheme in the OpenAPI schema; the token is checked below, with its own message.
BEARER = HTTPBearer(scheme_name="MigToken", auto_error=False,
                    description="A node agent's ServiceAccount token (`slotwise serve --mig-agents`), or the token "
                                "all agents share (`--mig-token-file`).")


def mig_router(store: LayoutStore, token: str | None = None, agents: AgentIdentity | None = None) -> APIRouter:
    """Routes under ``/mig``. A request presents, as a bearer token, ``token`` (shared by every
    agent), or an agent's own token that ``agents`` ties to a node: it then reports that node only."""
    if not token and agents is None:
        raise ValueError("the MIG report endpoint needs a token or the agents' ServiceAccount")

    def authorise(request: Request, bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> None:
        if bearer is not None and token and hmac.compare_digest(bearer.credentials.encode(), token.encode()):
            return
        try:
            reported = agents.node_of(bearer.credentials) if bearer is not None and agents is not None else None
        except (ApiException, HTTPError) as exc:  # the API server cannot review it now: the agent retries
            raise HTTPException(503, f"the token cannot be reviewed now: {exc}") from None
        if reported is None:
            raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        node = request.path_params.get("node")
        if node is not None and request.method == "POST" and node != reported:
            raise HTTPException(403, f"this agent runs on node {reported!r} and may report that node only")

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
        await run_in_threadpool(store.put, document)  # a database write, off the event loop

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
