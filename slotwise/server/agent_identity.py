"""Which node a MIG agent may report: the agent sends its ServiceAccount token (projected, with
the audience ``slotwise``), the API server reviews it (TokenReview), and a token bound to a pod
of the agents' ServiceAccount on node N may report node N only. One node's agent cannot then
describe another node's GPUs, as a token shared by every agent can."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

#: The extra a bound ServiceAccount token carries for the node its pod runs on.
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"
AUDIENCE = "slotwise"
#: How long a review is trusted, and how many are remembered (unknown tokens included, so that
#: a client sending new ones cannot make a review per request beyond that).
REVIEW_TTL_S = 60.0
REMEMBERED = 4096


class Reviewer(Protocol):
    def review_token(self, token: str, audiences: list[str]) -> dict[str, Any]: ...


class AgentIdentity:
    def __init__(self, reviewer: Reviewer, service_account: str, clock: Callable[[], float] = time.monotonic):
        """``service_account``: NAMESPACE/NAME of the agents' DaemonSet."""
        namespace, _, name = service_account.partition("/")
        if not namespace or not name:
            raise ValueError(f"expected NAMESPACE/NAME for the MIG agents' ServiceAccount, got {service_account!r}")
        self.username = f"system:serviceaccount:{namespace}:{name}"
        self.reviewer = reviewer
        self.clock = clock
        self._reviews: OrderedDict[str, tuple[float, str | None]] = OrderedDict()

    def node_of(self, token: str) -> str | None:
        """The node ``token``'s agent runs on, or None if it is not an agent's bound token."""
        key = hashlib.sha256(token.encode()).hexdigest()  # tokens are not kept in memory
        now = self.clock()
        cached = self._reviews.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        node = self._node(self.reviewer.review_token(token, [AUDIENCE]))
        self._reviews[key] = (now + REVIEW_TTL_S, node)
        self._reviews.move_to_end(key)
        while len(self._reviews) > REMEMBERED:
            self._reviews.popitem(last=False)
        return node

    def _node(self, status: dict[str, Any]) -> str | None:
        user = status.get("user") or {}
        if not status.get("authenticated") or user.get("username") != self.username:
            return None
        nodes = (user.get("extra") or {}).get(NODE_NAME_EXTRA) or []
        return nodes[0] if len(nodes) == 1 else None
