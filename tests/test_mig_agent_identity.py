"""MIG agents authenticated each by its own ServiceAccount token: the API server's TokenReview
says which node the token's pod runs on, and the agent may report that node only."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from kubernetes.client import ApiException

from quota.store import Store
from slotwise.server.agent_identity import AUDIENCE, NODE_NAME_EXTRA, REMEMBERED, REVIEW_TTL_S, AgentIdentity
from slotwise.server.app import create_app
from tests.conftest import Clock
from tests.test_server_mig import FREE

pytest_plugins = ["tests.quota_fixtures"]

AGENT = "system:serviceaccount:gpu-operator:slotwise-mig-agent"


class ApiServer:
    """TokenReview as the API server answers it: ``tokens`` maps a token to (username, node)."""

    def __init__(self, tokens: dict[str, tuple[str, str | None]]):
        self.tokens = tokens
        self.reviews: list[str] = []
        self.down = False

    def review_token(self, token: str, audiences: list[str]) -> dict[str, Any]:
        assert audiences == [AUDIENCE]
        if self.down:
            raise ApiException(status=503, reason="Service Unavailable")
        self.reviews.append(token)
        if token not in self.tokens:
            return {"authenticated": False, "error": "invalid bearer token"}
        user, node = self.tokens[token]
        return {"authenticated": True, "user": {"username": user, "extra": {NODE_NAME_EXTRA: [node]} if node else {}}}


TOKENS = {"on-free": (AGENT, "mig-free"), "on-full": (AGENT, "mig-full"),
          "other-account": ("system:serviceaccount:default:default", "mig-free"), "unbound": (AGENT, None)}


def test_a_token_is_tied_to_the_node_its_agent_runs_on():
    identity = AgentIdentity(ApiServer(TOKENS), "gpu-operator/slotwise-mig-agent")
    assert identity.node_of("on-free") == "mig-free" and identity.node_of("on-full") == "mig-full"
    assert identity.node_of("other-account") is None  # not the agents' ServiceAccount
    assert identity.node_of("unbound") is None  # a token not bound to a pod on a node
    assert identity.node_of("forged") is None
    with pytest.raises(ValueError, match="NAMESPACE/NAME"):
        AgentIdentity(ApiServer(TOKENS), "slotwise-mig-agent")


def test_reviews_are_remembered_for_a_while_and_in_bounded_number():
    server, clock = ApiServer(TOKENS), Clock()
    identity = AgentIdentity(server, "gpu-operator/slotwise-mig-agent", clock)
    for _ in range(3):
        identity.node_of("on-free")
        identity.node_of("forged")
    assert server.reviews == ["on-free", "forged"]  # unknown tokens too: no review per request
    clock.now += REVIEW_TTL_S
    identity.node_of("on-free")
    assert server.reviews[-1] == "on-free" and len(server.reviews) == 3
    for k in range(REMEMBERED + 10):
        identity.node_of(f"random-{k}")
    assert len(identity._reviews) == REMEMBERED


def test_an_agent_reports_its_own_node_only(store: Store):
    server = ApiServer(TOKENS)
    app = create_app(store, mig_agents=AgentIdentity(server, "gpu-operator/slotwise-mig-agent"), mig_token="shared-" + "s" * 32)
    client = TestClient(app)

    def post(node: str, token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return client.post(f"/mig/nodes/{node}", json=FREE.model_dump() | {"node": node}, headers=headers).status_code

    assert post("mig-free", "on-free") == 204
    assert post("mig-free", "on-full") == 403  # another node's agent
    refused = client.post("/mig/nodes/mig-free", json=FREE.model_dump(), headers={"Authorization": "Bearer on-full"})
    assert "runs on node 'mig-full'" in refused.json()["detail"]
    assert post("mig-free", "other-account") == 401 and post("mig-free", "forged") == 401 and post("mig-free", None) == 401
    assert post("mig-full", "shared-" + "s" * 32) == 204  # the shared token, where still given, reports any node
    assert client.get("/mig/nodes", headers={"Authorization": "Bearer on-full"}).json() == ["mig-free", "mig-full"]
    server.down = True
    assert post("mig-full", "new-token") == 503  # the API server cannot review it now: the agent retries


def test_serve_refuses_agent_identity_without_a_cluster_to_review_tokens(tmp_path):
    from typer.testing import CliRunner

    from slotwise.cli import app

    result = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{tmp_path / 'q.db'}", "--mig-agents", "gpu-operator/agent"])
    assert result.exit_code == 2 and "--mig-agents needs a cluster" in result.output, result.output
