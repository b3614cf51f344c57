"""The quota REST API: a FastAPI router the service mounts under ``/quota``.

Every call carries ``Authorization: Bearer <token>``. Admin tokens may change anything; a viewer
token reads the pool it names and the pools below it. Errors are 4xx with a message: 400 for a
refused change, 401/403 for authentication, 404 for what does not exist, 409 for a conflict,
422 for an invalid configuration (every problem listed).
"""

import json
import time
from collections.abc import Callable
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from quota.admission import QuotaDecision, request_for
from quota.admission import Request as QuotaRequest
from quota.config import (
    UNLIMITED,
    Amounts,
    PoolFields,
    QuotaConfig,
    QuotaConfigError,
    config_to_yaml,
    document_amounts,
    document_to_data,
    parse_amounts,
    read_config,
    to_document,
)
from quota.store import NotFound, Principal, Store, StoreError
from scheduler.model.k8s_json import ModelError, pod_from_k8s
from scheduler.model.resources import Resources
from scheduler.model.safe_yaml import load_yaml
from slotwise.quota_views import audit_json, pool_json, usage_json

Clock = Callable[[], float]
#: More values than a configuration of thousands of pools holds. YAML aliases repeat a value
#: without repeating its text: a few hundred bytes can stand for millions of pools.
MAX_DOCUMENT_VALUES = 100_000
#: A configuration of 5,000 pools is 0.8 MB of YAML and takes seconds to parse (4.8 s measured):
#: a larger body is refused before parsing, which builds many times its size in memory.
MAX_CONFIG_BYTES = 2**20


class PoolBody(PoolFields):
    """One pool, as PUT /quota/pools/{name} takes it (children are not part of it)."""

    parent: str | None = None


class AdmissionBody(BaseModel):
    """Either ``pods`` (Kubernetes Pod objects: one pod, or every member of a gang) or an
    explicit ``charge`` for ``pool``."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(min_length=1, max_length=512)
    pool: str | None = None
    charge: Amounts | None = None  # strict, as in a document: true is not an amount
    priority: int = Field(default=0, ge=-(2**31), lt=2**31)  # int32, as a pod's priority
    gpu_models: list[str] | None = None
    pods: list[dict[str, Any]] | None = Field(default=None, max_length=10_000)


def _decision_json(d: QuotaDecision) -> dict[str, Any]:
    out: dict[str, Any] = {"key": d.request.key, "pool": d.request.pool, "decision": d.kind, "reason": d.reason}
    if d.kind in ("admit", "borrow", "reclaim"):
        out["gpu_model"] = d.gpu_model  # type: ignore[union-attr]
    if d.kind in ("admit", "borrow"):
        out["borrowed"] = document_amounts(d.borrowed)  # type: ignore[union-attr]
        out["lenders"] = [{"pool": name, "amounts": document_amounts(a)} for name, a in d.lenders]  # type: ignore[union-attr]
    if d.kind == "reclaim":
        out["victims"] = [{"key": v.key, "pool": v.pool} for v in d.victims]  # type: ignore[union-attr]
    return out


def _visible(config: QuotaConfig, who: Principal) -> set[str] | None:
    """The pools ``who`` may read; None means all."""
    if who.role == "admin":
        return None
    seen: set[str] = set()
    frontier = [who.pool]
    while frontier:
        name = frontier.pop()
        if name is not None and name not in seen:
            seen.add(name)
            frontier += [c.name for c in config.children(name)]
    return seen


#: Declares the bearer scheme in the OpenAPI schema; a missing or unknown token is refused below,
#: with slotwise's own message.
BEARER = HTTPBearer(scheme_name="QuotaToken", auto_error=False,
                    description="An admin or viewer token (`slotwise quota token create`).")


def token_holder(store: Store, token: str) -> Principal:
    """Who ``token`` belongs to; 401 if nobody."""
    who = store.authenticate(token)
    if who is None:
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})
    return who


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _document(body: bytes) -> Any:
    """A configuration body: JSON read as JSON, which takes every character JSON allows (a raw
    DEL, say, where YAML's reader refuses control characters, so an export would not import
    back); anything else, or JSON's NaN and Infinity, as YAML."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except ValueError:  # not JSON (or not UTF-8): YAML says what is wrong with it
        return load_yaml(body)


def quota_router(store: Store, clock: Clock = time.time) -> APIRouter:
    router = APIRouter(prefix="/quota", tags=["quota"])

    def principal(bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]) -> Principal:
        if bearer is None:
            raise HTTPException(401, "send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
        return token_holder(store, bearer.credentials)

    def admin(who: Annotated[Principal, Depends(principal)]) -> Principal:
        if who.role != "admin":
            raise HTTPException(403, f"token {who.name} may only read pool {who.pool} and the pools below it")
        return who

    Reader = Annotated[Principal, Depends(principal)]
    Admin = Annotated[Principal, Depends(admin)]

    def refused(exc: Exception) -> HTTPException:
        if isinstance(exc, QuotaConfigError):
            return HTTPException(422, {"message": str(exc), "problems": exc.problems})
        if isinstance(exc, NotFound):
            return HTTPException(404, str(exc))
        return HTTPException(409 if "already" in str(exc) or "exists" in str(exc) else 400, str(exc))

    @router.get("/pools")
    def list_pools(who: Reader) -> list[dict[str, Any]]:
        config = store.config()
        visible = _visible(config, who)
        return [pool_json(p) for p in config.pools if visible is None or p.name in visible]

    @router.get("/pools/{name}")
    def get_pool(name: str, who: Reader) -> dict[str, Any]:
        config = store.config()
        visible = _visible(config, who)
        if visible is not None and name not in visible:
            raise HTTPException(403, f"token {who.name} may not read pool {name}")
        try:
            return pool_json(config.pool(name))
        except KeyError:
            raise HTTPException(404, f"no pool {name!r}") from None

    @router.put("/pools/{name}")
    def put_pool(name: str, body: PoolBody, who: Admin) -> dict[str, Any]:
        problems: list[str] = []
        pool = body.pool(name, body.parent, problems)
        if problems:
            raise refused(QuotaConfigError(problems))
        try:
            changes = store.set_pool(pool, who.name)
        except (QuotaConfigError, StoreError) as exc:
            raise refused(exc) from None
        return {"pool": pool_json(store.config().pool(name)), "changes": len(changes)}

    @router.delete("/pools/{name}")
    def delete_pool(name: str, who: Admin) -> dict[str, str]:
        try:
            store.delete_pool(name, who.name)
        except StoreError as exc:
            raise refused(exc) from None
        return {"deleted": name}

    @router.get("/config", responses={200: {"description": "The configuration, as JSON, or with format=yaml as YAML.",
                                            "content": {"application/yaml": {"schema": {"type": "object"}}}}})
    def export_config(who: Admin, format: Annotated[str, Query(pattern="^(json|yaml)$")] = "json") -> Any:
        config = store.config()
        if format == "yaml":
            return PlainTextResponse(config_to_yaml(config), media_type="application/yaml")
        return document_to_data(to_document(config))

    def replace_config(body: bytes, actor: str) -> list[tuple[str, str, dict[str, Any]]]:
        try:
            data = _document(body)
            if data is None:  # an empty body would remove every pool unused: a slip, not a wish
                raise HTTPException(400, 'the body holds no configuration; to remove every pool send {"pools": []}')
            if _values(data, MAX_DOCUMENT_VALUES) > MAX_DOCUMENT_VALUES:
                raise HTTPException(413, f"the configuration holds more than {MAX_DOCUMENT_VALUES} values")
            return store.replace_config(read_config(data), actor)
        except yaml.YAMLError as exc:
            raise HTTPException(400, f"body is not valid YAML or JSON: {exc}") from None
        except RecursionError:  # the parser, or validation, of a document nested thousands deep
            raise HTTPException(400, "body is nested too deeply to be a quota configuration") from None
        except (QuotaConfigError, StoreError) as exc:
            raise refused(exc) from None

    # The body is read by hand (JSON or YAML, one parser), so the schema names it here.
    @router.put("/config", openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"type": "object"}}, "application/yaml": {"schema": {"type": "object"}}}}})
    async def import_config(request: Request, who: Admin) -> dict[str, Any]:
        """The whole configuration, as JSON or (Content-Type application/yaml) YAML."""
        body = await request.body()
        if len(body) > MAX_CONFIG_BYTES:
            raise HTTPException(413, f"the configuration is {len(body):,} bytes; at most {MAX_CONFIG_BYTES:,} are read")
        # Off the event loop, which the webhooks and the extender share: PyYAML reads a large
        # document for seconds, and the write waits for the store's lock.
        changes = await run_in_threadpool(replace_config, body, who.name)
        return {"changes": [{"action": a, "subject": s, "detail": d} for a, s, d in changes]}

    @router.get("/usage")
    def usage(who: Reader) -> dict[str, Any]:
        ledger = store.ledger()
        return usage_json(ledger, _visible(ledger.config, who), viewer=who.role != "admin")

    @router.post("/admissions")
    def admit(body: AdmissionBody, who: Admin) -> dict[str, Any]:
        request = _request(body)
        try:
            decision = store.admit(request, clock(), who.name)
        except StoreError as exc:
            raise refused(exc) from None
        return _decision_json(decision)

    @router.delete("/admissions/{key:path}")
    def release(key: str, who: Admin) -> dict[str, str]:
        try:
            workload = store.release(key, who.name)
        except StoreError as exc:
            raise refused(exc) from None
        return {"released": workload.key, "pool": workload.pool}

    @router.get("/audit")
    def audit(who: Admin, limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
              subject: str | None = None) -> list[dict[str, Any]]:
        try:
            entries = store.audit(limit, subject)
        except StoreError as exc:  # a subject the database cannot compare with
            raise refused(exc) from None
        return audit_json(entries)

    return router


def _values(data: Any, limit: int) -> int:
    """How many values ``data`` holds, an aliased one counted each time it appears; counting
    stops past ``limit`` (an alias may even contain itself)."""
    count, pending = 0, [data]
    while pending and count <= limit:
        value = pending.pop()
        count += 1
        if isinstance(value, dict):
            pending += value.values()
        elif isinstance(value, list):
            pending += value
    return count


def _request(body: AdmissionBody) -> QuotaRequest:
    if (body.pods is None) == (body.charge is None):
        raise HTTPException(422, "give either pods (Kubernetes Pod objects) or charge with pool")
    if body.pods is not None:
        if not body.pods:
            raise HTTPException(422, "pods: at least one pod")
        try:
            pods = [pod_from_k8s(obj) for obj in body.pods]
        except ModelError as exc:
            raise HTTPException(422, f"pods: {exc}") from None
        request = request_for(body.key, pods)
        # Each pod's asks are bounded, but a gang's add up.
        if any(amount >= UNLIMITED for amount in request.charge.values()):
            raise HTTPException(422, "pods: together they ask more than the quota ledger counts")
        return QuotaRequest(request.key, body.pool or request.pool, request.charge, request.priority, request.gpu_models)
    if body.pool is None:
        raise HTTPException(422, "pool: required with charge")
    problems: list[str] = []
    charge = parse_amounts(body.pool, "charge", body.charge or {}, problems)
    if problems:
        raise HTTPException(422, "; ".join(problems))
    models = frozenset(body.gpu_models) if body.gpu_models is not None else None
    return QuotaRequest(body.key, body.pool, Resources(charge), body.priority, models)
