"""The thin adapter over the official ``kubernetes`` client: list, watch, bind and the admission
loop's writes (pod patch, eviction, event, pod condition; GPU reservation pods and share
ConfigMaps), the leader election's Lease and the TokenReviews of MIG agents' tokens, nothing else. Nodes and pods come through
CoreV1Api, PodGroups (scheduler-plugins' and Volcano's CRDs) through CustomObjectsApi.

Objects travel as plain camelCase dicts (lists with ``_preload_content=False``, watch events as
the stream carries them) because ``scheduler.model.k8s_json`` reads exactly those, and skipping the
client's model classes is what makes a 5,000-node relist cheap. Watch streams are read here too:
the client's reader decodes every event three times (JSON, back to JSON, JSON again), and with
``deserialize=False`` client 37 fails on ERROR events, the very ones that carry 410 Gone.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from kubernetes import client

from slotwise.server.leader import LeaseConflict

T = TypeVar("T")

#: Objects per page of a list, as client-go's reflector reads them. A cluster's 20,000 pods in one
#: reply were tens of megabytes parsed in one call, which holds the GIL throughout: every webhook
#: and extender call waited for the resync (over a second at 5,000 nodes and 20,000 pods).
LIST_PAGE = 500

#: Connections kept open to the API server: each of the cache's watches holds one while it
#: streams, the admission loop lifts 8 gates at once, and the lease, events and reconcilers write
#: beside them. The client's default, 5 per CPU (10 on two cores), threw a connection away after
#: most writes under load, and the next one opened (and TLS-handshook) another.
CONNECTIONS = 32

#: Kinds the cache follows, by the CoreV1Api method that lists them.
LISTERS = {"nodes": "list_node", "pods": "list_pod_for_all_namespaces"}

SCHEDULER_PLUGINS_POD_GROUPS = "podgroups.scheduling.x-k8s.io"
VOLCANO_POD_GROUPS = "podgroups.scheduling.volcano.sh"
#: Custom kinds the cache follows where their CRD is installed: (group, version, plural).
CUSTOM_LISTERS = {
    SCHEDULER_PLUGINS_POD_GROUPS: ("scheduling.x-k8s.io", "v1alpha1", "podgroups"),
    VOLCANO_POD_GROUPS: ("scheduling.volcano.sh", "v1beta1", "podgroups"),
}


class Expired(Exception):
    """The watch's resourceVersion is too old (HTTP 410 Gone): list again."""


class Unavailable(Exception):
    """A custom kind cannot be listed: its CRD is not installed (404), or RBAC does not allow it (403)."""


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    items: list[T]
    resource_version: str


def _body(response: Any) -> bytes:
    """The reply's body, its connection back in the pool. With ``_preload_content=False`` urllib3
    holds the connection until it is released, and the next request opened (and TLS-handshook) a
    new one: a quarter of the admission loop's time at 25 pods/s."""
    try:
        return response.data
    finally:
        response.release_conn()


def _lines(response: Any) -> Iterator[bytes]:
    """The non-blank lines of a streamed reply (a watch sends one JSON event per line)."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        *complete, pending = (pending + chunk).split(b"\n")
        yield from (line for line in complete if line.strip())


class Kube:
    def __init__(self, api: client.ApiClient):
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.coordination = client.CoordinationV1Api(api)
        self.authentication = client.AuthenticationV1Api(api)

    @classmethod
    def configured(cls, config: client.Configuration) -> Kube:
        """A client from ``config`` (as ``kubernetes.config`` loads it), keeping ``CONNECTIONS`` open."""
        config.connection_pool_maxsize = CONNECTIONS
        return cls(client.ApiClient(config))

    @classmethod
    def at(cls, host: str, token: str | None = None, ca_file: str | None = None) -> Kube:
        """A client for ``host``; in a cluster use :meth:`configured` with ``load_incluster_config``."""
        config = client.Configuration(host=host)
        if token:
            config.api_key = {"authorization": f"Bearer {token}"}
        if ca_file:
            config.ssl_ca_cert = ca_file
        return cls.configured(config)

    def _lister(self, kind: str) -> tuple[Callable[..., Any], tuple[str, ...]]:
        """The client method that lists ``kind`` cluster-wide, and its positional arguments."""
        if kind in CUSTOM_LISTERS:
            return self.custom.list_cluster_custom_object, CUSTOM_LISTERS[kind]
        return getattr(self.core, LISTERS[kind]), ()

    def list(self, kind: str, read: Callable[[dict[str, Any]], T]) -> Listing[T]:
        """Every object of ``kind``, as ``read`` makes it of each page of ``LIST_PAGE`` as it
        arrives (the page's JSON is dropped then); a continue token that expired meanwhile (410
        Gone) raises :class:`Expired`: list again from the start."""
        method, args = self._lister(kind)
        items: list[T] = []
        token = None
        while True:
            try:
                response = method(*args, limit=LIST_PAGE, _continue=token, _preload_content=False)
            except client.ApiException as exc:
                if kind in CUSTOM_LISTERS and exc.status in (403, 404):
                    raise Unavailable(f"{exc.status} {exc.reason}") from None
                if exc.status == 410:
                    raise Expired(str(exc.reason)) from None
                raise
            body = orjson.loads(_body(response))
            items += map(read, body.get("items") or [])
            token = body["metadata"].get("continue")
            if not token:
                return Listing(items, body["metadata"]["resourceVersion"])

    def watch(self, kind: str, resource_version: str, timeout_s: int) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(type, object)`` events from ``resource_version`` on, for at most ``timeout_s``; a
        410 Gone, in the reply or as an ERROR event, raises :class:`Expired`."""
        method, args = self._lister(kind)
        try:
            response = method(*args, watch=True, resource_version=resource_version, timeout_seconds=timeout_s,
                              allow_watch_bookmarks=True, _preload_content=False)
        except client.ApiException as exc:
            if exc.status == 410:
                raise Expired(str(exc.reason)) from None
            raise
        try:
            for line in _lines(response):
                event = orjson.loads(line)
                if event["type"] == "ERROR":  # a Status: the watch ends here
                    status = event["object"]
                    reason = f"{status.get('reason')}: {status.get('message')}"
                    if status.get("code") == 410:
                        raise Expired(reason)
                    raise client.ApiException(status=status.get("code"), reason=reason)
                yield event["type"], event["object"]
        finally:
            response.close()  # a stream left unread cannot go back to the pool
            response.release_conn()

    def bind(self, namespace: str, name: str, uid: str, node: str) -> None:
        """Create the pod's ``binding`` subresource, as the default binder does; raises ``ApiException``."""
        body = client.V1Binding(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace, uid=uid or None),
            target=client.V1ObjectReference(api_version="v1", kind="Node", name=node),
        )
        # The API returns a Status, which the generated client cannot deserialise as a Binding.
        _body(self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False))

    def patch_pod(self, namespace: str, name: str, json_patch: list[dict[str, Any]]) -> None:
        """Apply an RFC 6902 JSON Patch to the pod; a failed ``test`` op answers 422 (``ApiException``)."""
        _body(self.core.patch_namespaced_pod(name, namespace, json_patch, _content_type="application/json-patch+json",
                                             _preload_content=False))

    def create_pod(self, namespace: str, body: dict[str, Any]) -> None:
        _body(self.core.create_namespaced_pod(namespace, body, _preload_content=False))

    def delete_pod(self, namespace: str, name: str) -> None:
        _body(self.core.delete_namespaced_pod(name, namespace, _preload_content=False))

    def create_config_map(self, namespace: str, body: dict[str, Any]) -> None:
        _body(self.core.create_namespaced_config_map(namespace, body, _preload_content=False))

    def evict(self, namespace: str, name: str, grace_seconds: int) -> None:
        """Evict through the Eviction API (policy/v1), so PodDisruptionBudgets are honoured (429 if not now)."""
        body = client.V1Eviction(
            api_version="policy/v1", kind="Eviction", metadata=client.V1ObjectMeta(name=name, namespace=namespace),
            delete_options=client.V1DeleteOptions(grace_period_seconds=grace_seconds),
        )
        _body(self.core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False))

    def create_event(self, namespace: str, name: str, uid: str, reason: str, message: str,
                     event_type: str = "Normal", component: str = "slotwise") -> None:
        """A core/v1 Event about the pod, which ``kubectl describe pod`` lists."""
        now = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(generate_name=f"{name}.", namespace=namespace),
            involved_object=client.V1ObjectReference(api_version="v1", kind="Pod", name=name, namespace=namespace,
                                                     uid=uid or None),
            reason=reason, message=message, type=event_type, count=1, first_timestamp=now, last_timestamp=now,
            source=client.V1EventSource(component=component),
        )
        _body(self.core.create_namespaced_event(namespace, body, _preload_content=False))

    def review_token(self, token: str, audiences: list[str]) -> dict[str, Any]:
        """A TokenReview's status: whether the API server authenticates ``token`` for one of
        ``audiences``, and as whom (``user.username``, ``user.extra``)."""
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": audiences}}
        response = self.authentication.create_token_review(body, _preload_content=False)
        return json.loads(_body(response)).get("status") or {}

    def set_pod_condition(self, namespace: str, name: str, condition: dict[str, Any]) -> None:
        """Set one pod condition through the status subresource; a strategic merge keys conditions
        by type, so the kubelet's and scheduler's own conditions stay."""
        _body(self.core.patch_namespaced_pod_status(name, namespace, {"status": {"conditions": [condition]}},
                                                    _content_type="application/strategic-merge-patch+json",
                                                    _preload_content=False))


class KubeLease:
    """The Lease ``namespace/name``, for :class:`slotwise.server.leader.Elector`. A replace
    carries the resourceVersion read, so a write based on a stale read answers 409."""

    def __init__(self, kube: Kube, namespace: str, name: str):
        self.api = kube.coordination
        self.namespace = namespace
        self.name = name

    def __str__(self) -> str:
        return f"Lease {self.namespace}/{self.name}"

    def read(self) -> tuple[dict[str, Any], str] | None:
        try:
            response = self.api.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body = json.loads(_body(response))
        return body.get("spec") or {}, body["metadata"]["resourceVersion"]

    def create(self, spec: dict[str, Any]) -> None:
        self._write(self.api.create_namespaced_lease, self.namespace, self._body(spec))

    def replace(self, spec: dict[str, Any], resource_version: str) -> None:
        self._write(self.api.replace_namespaced_lease, self.name, self.namespace, self._body(spec, resource_version))

    def _body(self, spec: dict[str, Any], resource_version: str | None = None) -> dict[str, Any]:
        metadata = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    @staticmethod
    def _write(method: Callable[..., Any], *args: Any) -> None:
        try:
            _body(method(*args, _preload_content=False))
        except client.ApiException as exc:
            if exc.status == 409:  # someone wrote it since our read, or created it first
                raise LeaseConflict(exc.reason) from None
            raise
