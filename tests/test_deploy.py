"""The kustomize base in deploy/base (what ``kubectl apply -k deploy`` applies), its overlay of
several replicas in deploy/ha, and kube-scheduler's extender stanza: every object is valid
Kubernetes, and the pieces agree with each other (names, ports, paths, certificate, RBAC)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import typer
import yaml

from quota.config import config_from_yaml
from slotwise import cli
from slotwise.server.cache import ClusterCache
from slotwise.server.extender import extender_router
from slotwise.server.webhooks import webhook_router

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "base"
HA = DEPLOY.parent / "ha"
SCHEDULER = DEPLOY.parent / "scheduler"
APISERVER = DEPLOY.parent / "apiserver"
#: The Kubernetes version the manifests are checked against (strict: unknown fields fail).
KUBERNETES = "1.33"
NAMESPACE = "slotwise-system"
SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease", NAMESPACE}
CERT_MANAGER = "cert-manager.io/v1"
SERVING = "slotwise-serving"


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())


def render() -> list[dict[str, Any]]:
    """What ``kustomize build deploy`` gives: the resources in order. The base sets nothing but
    the namespace, which every namespaced object already names (asserted below)."""
    return [doc for name in kustomization()["resources"]
            for doc in yaml.safe_load_all((DEPLOY / name).read_text()) if doc]


OBJECTS = render()


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [o for o in OBJECTS if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return found


def grants(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in role["rules"]
            for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}


def test_kustomization_lists_every_manifest_and_nothing_else():
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {p.name for p in DEPLOY.glob("*.yaml")} - {"kustomization.yaml"}


NO_KUBECTL = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")


def kustomize(folder: Path) -> list[dict[str, Any]]:
    built = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
    assert built.returncode == 0, built.stderr
    return [d for d in yaml.safe_load_all(built.stdout) if d]


@NO_KUBECTL
@pytest.mark.parametrize("folder", [DEPLOY, DEPLOY.parent], ids=["base", "deploy"])
def test_kubectl_kustomize_renders_the_same_objects(folder):
    key = lambda o: (o["kind"], o["metadata"]["name"])  # noqa: E731 - kustomize reorders by kind
    assert sorted(kustomize(folder), key=key) == sorted(OBJECTS, key=key)


@pytest.mark.parametrize("obj", [o for o in OBJECTS if o["apiVersion"] != CERT_MANAGER],
                         ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_object_is_valid_kubernetes(obj):
    kubernetes_validate.validate(obj, KUBERNETES, strict=True)


def test_namespaced_objects_live_in_slotwise_system():
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass", "MutatingWebhookConfiguration",
                      "ValidatingWebhookConfiguration"}
    for obj in OBJECTS:
        assert ("namespace" in obj["metadata"]) == (obj["kind"] not in cluster_scoped), obj["kind"]
        assert obj["metadata"].get("namespace", NAMESPACE) == NAMESPACE
    assert kustomization()["namespace"] == NAMESPACE == one("Namespace")["metadata"]["name"]


def test_rbac_grants_exactly_what_slotwise_does():
    granted = grants(one("ClusterRole"))
    assert not any("*" in entry for entry in granted)
    assert granted == {("", "nodes", "get"), ("", "nodes", "list"), ("", "nodes", "watch"),
                       ("", "pods", "get"), ("", "pods", "list"), ("", "pods", "watch"), ("", "pods", "patch"),
                       ("", "pods/status", "patch"), ("", "pods/eviction", "create"), ("", "events", "create"),
                       ("", "configmaps", "create"), ("authentication.k8s.io", "tokenreviews", "create")} | {
        (group, "podgroups", verb) for group in ("scheduling.x-k8s.io", "scheduling.volcano.sh")
        for verb in ("get", "list", "watch")}
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in one("ClusterRole")["rules"])
    binding = one("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == one("ClusterRole")["metadata"]["name"]
    account = one("ServiceAccount", "slotwise")["metadata"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": NAMESPACE}]


def test_gpu_share_reservations_are_made_in_slotwise_s_namespace_only_and_only_annotate_themselves():
    """slotwise creates and deletes pods in its namespace, nowhere else; the reservation pods'
    account reads and patches pods there, nothing more (docs/gpu-sharing.md)."""
    from slotwise.server.gpu_shares import ReservationSettings

    settings = ReservationSettings()
    assert grants(one("Role", "slotwise-gpu-reservations")) == {("", "pods", "create"), ("", "pods", "delete")}
    assert grants(one("Role", "slotwise-gpu-reservation")) == {("", "pods", "get"), ("", "pods", "patch")}
    for role, account in (("slotwise-gpu-reservations", "slotwise"),
                          ("slotwise-gpu-reservation", settings.service_account)):
        binding = one("RoleBinding", role)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": one("ServiceAccount", account)["metadata"]
                                        ["name"], "namespace": settings.namespace}]
    assert settings.namespace == NAMESPACE
    priority = one("PriorityClass", settings.priority_class)
    assert priority["value"] == 1_000_000_000 and priority["preemptionPolicy"] == "Never"  # highest a user class may be
    assert container()["image"] == settings.image  # the reservation pods run the Deployment's release
    assert {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}} in container()["env"]


def container() -> dict[str, Any]:
    [c] = one("Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def test_deployment_serves_https_with_health_probes_as_a_locked_down_non_root_pod():
    deployment = one("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    c = container()
    assert c["command"] + c["args"][:3] == ["slotwise", "serve", "--host=0.0.0.0", "--port=8443"]
    assert c["ports"] == [{"name": "https", "containerPort": 8443, "protocol": "TCP"},
                          {"name": "control-plane", "containerPort": 9443, "protocol": "TCP"}]
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "https", "scheme": "HTTPS"}
    assert pod["serviceAccountName"] == one("ServiceAccount", "slotwise")["metadata"]["name"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}}
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_a_stopping_pod_leaves_the_service_finishes_its_requests_and_hands_the_lease_over():
    from slotwise.commands.serve import GRACEFUL_SHUTDOWN_S
    from slotwise.server.leader import Timings

    pod = one("Deployment")["spec"]["template"]["spec"]
    pause = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The pause outlasts the readiness probe's period (endpoints drop it), then uvicorn's graceful
    # shutdown, and the lease release after the loop stops (5 s at most), all within the grace period.
    assert pause >= container()["readinessProbe"]["periodSeconds"]
    assert pause + GRACEFUL_SHUTDOWN_S + 5 <= pod["terminationGracePeriodSeconds"]
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container()["env"]
    assert grants(one("Role", "slotwise-leader-election")) == {
        ("coordination.k8s.io", "leases", verb) for verb in ("get", "create", "update")}
    assert one("RoleBinding", "slotwise-leader-election")["subjects"][0]["name"] == "slotwise"
    assert serve_options()["leader_elect"] and serve_options()["lease"] == "slotwise"
    assert Timings().renew_deadline_s < Timings().duration_s
    spread = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["labelSelector"]["matchLabels"].items() <= one("Deployment")["spec"]["template"]["metadata"]["labels"].items()


@NO_KUBECTL
def test_the_ha_overlay_runs_replicas_on_postgresql_behind_a_disruption_budget():
    objects = kustomize(HA)
    for obj in objects:
        if obj["apiVersion"] != CERT_MANAGER:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    spec = deployment["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    [c] = spec["template"]["spec"]["containers"]
    [db] = [e for e in c["env"] if e["name"] == "SLOTWISE_DB"]
    assert db == {"name": "SLOTWISE_DB", "valueFrom": {"secretKeyRef": {"name": "slotwise-database", "key": "url"}}}
    assert not [o for o in objects if o["kind"] == "PersistentVolumeClaim"]  # no volume a second node cannot mount
    assert "/var/lib/slotwise" not in {m["mountPath"] for m in c["volumeMounts"]}
    assert "persistentVolumeClaim" not in str(spec["template"]["spec"]["volumes"])
    [budget] = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 1 and budget["metadata"]["namespace"] == NAMESPACE
    assert budget["spec"]["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items()
    assert len(objects) == len(OBJECTS)  # the base's objects less the claim, plus the budget


def serve_options() -> dict[str, Any]:
    """The container's arguments as ``slotwise serve`` itself parses them (an unknown or
    misspelt option fails here as it would in the pod)."""
    c = container()
    assert c["command"] == ["slotwise"] and c["args"][0] == "serve"
    command = typer.main.get_command(cli.app).commands["serve"]  # type: ignore[attr-defined]
    return command.make_context("serve", list(c["args"][1:])).params


def test_the_container_runs_a_service_that_follows_the_cluster():
    options = serve_options()
    assert options["in_cluster"] and options["kubeconfig"] is None
    assert options["nodes"] is None and options["pods"] is None  # no dry run
    assert options["managed"] == "*"  # the webhooks' namespaceSelector is the opt-in
    assert options["tls_cert"] and options["tls_key"]


def test_the_database_tls_pools_and_token_sit_on_volumes_the_read_only_root_allows():
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container()["volumeMounts"]}
    [db] = [e["value"] for e in container()["env"] if e["name"] == "SLOTWISE_DB"]
    database = Path(db.removeprefix("sqlite:///"))
    # The state outlives the pod: a restart with an empty database would over-commit quota.
    assert mounts[str(database.parent)]["persistentVolumeClaim"]["claimName"] == \
        one("PersistentVolumeClaim")["metadata"]["name"]
    options = serve_options()
    tls = mounts[str(options["tls_cert"].parent)]
    assert options["tls_key"].parent == options["tls_cert"].parent
    assert tls["secret"]["secretName"] == one("Certificate", SERVING)["spec"]["secretName"]
    pools = mounts[str(options["quota_config"].parent)]["configMap"]
    assert pools["name"] == one("ConfigMap")["metadata"]["name"]
    config_from_yaml(one("ConfigMap")["data"][options["quota_config"].name])  # the shipped pools import
    token = mounts[str(options["admin_token_file"].parent)]["secret"]
    assert options["admin_token_file"].name == "token" and token["secretName"] == "slotwise-admin-token"
    assert not any(o["kind"] == "Secret" for o in OBJECTS)  # the admin creates the token; none ships


def test_service_maps_443_and_9443_to_the_pods_ports():
    service = one("Service")["spec"]
    assert service["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
                                {"name": "control-plane", "port": 9443, "targetPort": "control-plane", "protocol": "TCP"}]
    assert service["selector"].items() <= one("Deployment")["spec"]["template"]["metadata"]["labels"].items()


def service_host() -> str:
    return f"{one('Service')['metadata']['name']}.{NAMESPACE}.svc"


def test_certificate_names_the_service_and_comes_from_the_issuer():
    issuer, certificate = one("Issuer", "slotwise-selfsigned"), one("Certificate", SERVING)
    assert issuer["apiVersion"] == certificate["apiVersion"] == CERT_MANAGER
    assert issuer["spec"] == {"selfSigned": {}}
    assert certificate["spec"]["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
    assert service_host() in certificate["spec"]["dnsNames"]
    assert isinstance(certificate["spec"]["secretName"], str)


@pytest.mark.parametrize("kind, path", [("MutatingWebhookConfiguration", "/webhooks/mutate"),
                                        ("ValidatingWebhookConfiguration", "/webhooks/validate")])
def test_webhooks_admit_pod_creation_outside_system_namespaces(kind, path):
    configuration = one(kind)
    certificate = one("Certificate", SERVING)["metadata"]
    assert configuration["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{certificate['namespace']}/{certificate['name']}"
    [webhook] = configuration["webhooks"]
    assert webhook["sideEffects"] == "None" and webhook["timeoutSeconds"] == 5
    assert webhook["admissionReviewVersions"] == ["v1"] and webhook["failurePolicy"] == "Fail"
    assert webhook["clientConfig"]["service"] == {"namespace": NAMESPACE, "name": one("Service")["metadata"]["name"],
                                                  "path": path, "port": 9443}
    assert "caBundle" not in webhook["clientConfig"]  # cert-manager's CA injector fills it
    if kind == "MutatingWebhookConfiguration":
        assert webhook["reinvocationPolicy"] == "IfNeeded"  # the mutation only adds what is absent
    assert webhook["rules"] == [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                 "resources": ["pods"], "scope": "Namespaced"}]
    system, opt_in = webhook["namespaceSelector"]["matchExpressions"]
    assert system["key"] == "kubernetes.io/metadata.name" and system["operator"] == "NotIn"
    assert set(system["values"]) == SYSTEM_NAMESPACES
    assert opt_in == {"key": "slotwise.io/managed", "operator": "In", "values": ["true"]}


def test_webhook_and_extender_paths_are_the_service_routes():
    served = {route.path for route in webhook_router([]).routes} | {
        route.path for route in extender_router(ClusterCache()).routes}
    paths = {one(kind)["webhooks"][0]["clientConfig"]["service"]["path"]
             for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")}
    assert paths <= served
    assert f"{urlsplit(extender()['urlPrefix']).path}/{{verb}}" in served


def port_of(service_port: int) -> int:
    """The container port behind a port of the Service."""
    [target] = [p["targetPort"] for p in one("Service")["spec"]["ports"] if p["port"] == service_port]
    [port] = [p["containerPort"] for p in container()["ports"] if p["name"] == target]
    return port


def test_the_webhooks_and_the_extender_answer_the_control_plane_s_client_certificates_only():
    """The Service port the webhooks and the extender call leads to the listener that requires a
    client certificate; that listener trusts the client CA cert-manager keeps, which signs the
    certificates kube-apiserver (by the webhook's address) and kube-scheduler present."""
    options = serve_options()
    webhook_port = one("MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]["port"]
    assert port_of(webhook_port) == port_of(urlsplit(extender()["urlPrefix"]).port) == options["client_cert_port"]
    volumes = {v["name"]: v for v in one("Deployment")["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container()["volumeMounts"]}
    ca_volume = mounts[str(options["client_ca"].parent)]["secret"]
    client_ca = one("Certificate", "slotwise-client-ca")
    assert client_ca["spec"]["isCA"] and ca_volume["secretName"] == client_ca["spec"]["secretName"]
    assert ca_volume["items"] == [{"key": "ca.crt", "path": options["client_ca"].name}]
    issuer = one("Issuer", "slotwise-client-ca")
    assert issuer["spec"] == {"ca": {"secretName": client_ca["spec"]["secretName"]}}
    secrets = {}
    for name in ("slotwise-kube-apiserver", "slotwise-kube-scheduler"):
        spec = one("Certificate", name)["spec"]
        assert spec["issuerRef"] == {"kind": "Issuer", "name": issuer["metadata"]["name"]}
        assert "client auth" in spec["usages"] and "server auth" not in spec["usages"]
        secrets[name] = spec["secretName"]

    apiserver = yaml.safe_load((APISERVER / "admission-configuration.yaml").read_text())
    assert (apiserver["apiVersion"], apiserver["kind"]) == ("apiserver.config.k8s.io/v1", "AdmissionConfiguration")
    assert {p["configuration"]["kind"] for p in apiserver["plugins"]} == {"WebhookAdmissionConfiguration"}
    assert {p["name"]: p["configuration"]["kubeConfigFile"] for p in apiserver["plugins"]} == dict.fromkeys(
        ("MutatingAdmissionWebhook", "ValidatingAdmissionWebhook"), "/etc/kubernetes/slotwise/webhook-client.kubeconfig")
    [user] = yaml.safe_load((APISERVER / "webhook-client.kubeconfig").read_text())["users"]
    # kube-apiserver picks the credentials by the webhook's address: <service>.<namespace>.svc:<port>.
    assert user["name"] == f"{service_host()}:{webhook_port}"
    assert set(user["user"]) == {"client-certificate", "client-key"}
    assert {"certFile", "keyFile", "caFile"} <= set(extender()["tlsConfig"])


@NO_KUBECTL
def test_the_overlay_without_client_certificates_serves_the_webhooks_on_the_main_port():
    objects = kustomize(DEPLOY.parent / "without-client-certs")
    for obj in objects:
        if obj["apiVersion"] != CERT_MANAGER:
            kubernetes_validate.validate(obj, KUBERNETES, strict=True)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    command = typer.main.get_command(cli.app).commands["serve"]  # type: ignore[attr-defined]
    options = command.make_context("serve", list(c["args"][1:])).params
    assert options["client_ca"] is None and c["args"] == [a for a in container()["args"] if not a.startswith("--client-c")]
    [service] = [o for o in objects if o["kind"] == "Service"]
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        [configuration] = [o for o in objects if o["kind"] == kind]
        port = configuration["webhooks"][0]["clientConfig"]["service"]["port"]
        [target] = [p["targetPort"] for p in service["spec"]["ports"] if p["port"] == port]
        assert [p["containerPort"] for p in c["ports"] if p["name"] == target] == [options["port"]]
    assert not [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert len(objects) == len(OBJECTS) - 1


def test_the_network_policy_admits_the_two_ports_the_pods_serve_and_no_other():
    policy = one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= one("Deployment")["spec"]["template"]["metadata"]["labels"].items()
    assert policy["policyTypes"] == ["Ingress"]
    admitted = {port["port"] for rule in policy["ingress"] for port in rule["ports"]}
    assert admitted == {p["name"] for p in container()["ports"]}
    [api] = [rule for rule in policy["ingress"] if rule["ports"][0]["port"] == "https"]
    assert api["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"slotwise.io/client": "true"}}}]


def extender() -> dict[str, Any]:
    [found] = yaml.safe_load((SCHEDULER / "kube-scheduler-config.yaml").read_text())["extenders"]
    return found


def test_scheduler_extender_stanza():
    config = yaml.safe_load((SCHEDULER / "kube-scheduler-config.yaml").read_text())
    assert (config["apiVersion"], config["kind"]) == ("kubescheduler.config.k8s.io/v1", "KubeSchedulerConfiguration")
    stanza = extender()
    assert stanza["urlPrefix"] == f"https://{service_host()}:9443/extender"
    assert (stanza["filterVerb"], stanza["prioritizeVerb"], stanza["preemptVerb"]) == \
        ("filter", "prioritize", "preempt")
    assert "bindVerb" not in stanza  # slotwise does not bind, and RBAC gives it no pods/binding
    assert stanza["weight"] > 0 and stanza["enableHTTPS"] is True and stanza["tlsConfig"]["caFile"]
    assert stanza["nodeCacheCapable"] is True and stanza["ignorable"] is False
    assert stanza["httpTimeout"] == "1s"
    # Shares are advertised by no node: kube-scheduler leaves them to slotwise (docs/gpu-sharing.md).
    assert stanza["managedResources"] == [{"name": "nvidia.com/gpu", "ignoredByScheduler": False},
                                         {"name": "slotwise.io/gpu-milli", "ignoredByScheduler": True}]
    assert set(stanza) <= {"urlPrefix", "filterVerb", "prioritizeVerb", "preemptVerb", "bindVerb", "weight",
                           "enableHTTPS", "tlsConfig", "httpTimeout", "nodeCacheCapable", "managedResources",
                           "ignorable"}
