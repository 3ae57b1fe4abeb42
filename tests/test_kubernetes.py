"""The Kubernetes manifests in deploy/kubernetes: valid against the Kubernetes API
schemas (offline, kubernetes-validate), and consistent with what the service
does: the port BentoML listens on, probe paths that answer on the real app, env
vars the service reads, a grace period longer than its request timeout, and
selectors that pick the Deployment's pods."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import kubernetes_validate
import pytest
import yaml

from loan_preprocessing.records.store import DecisionStore
from loan_preprocessing.serving.middleware import OPEN_PATHS
from loan_preprocessing.serving.settings import ENV_PREFIX, ServiceSettings
from tests.support.server import ROOT

MANIFEST_DIR: Final = ROOT / "deploy" / "kubernetes"
IMAGE_TEMPLATE: Final = ROOT / "deploy" / "image" / "Dockerfile.j2"
KUSTOMIZATION: Final = MANIFEST_DIR / "kustomization.yaml"
# Examples are documentation: validated, but not applied by the base.
EXAMPLE_SUFFIX: Final = ".example.yaml"
# The oldest release with the native preStop `sleep` action on by default (1.30),
# and the newest the validator knows.
KUBERNETES_VERSIONS: Final = ("1.30", kubernetes_validate.latest_version())
TELEMETRY_ENV: Final = "BENTOML_DO_NOT_TRACK"
# Resident memory of one worker process (Python, numpy, pandas, scikit-learn and
# the pipeline) measured at 150-300 MB; the requests and limits must cover it.
WORKER_RSS_MIB: Final = (150, 300)
PROBES: Final = ("startupProbe", "livenessProbe", "readinessProbe")


def image_template_value(name: str) -> str:
    """A `{% set name = value %}` of the image's Dockerfile template."""
    match = re.search(rf"{{% set {name} = \"?([^\"%]+?)\"? %}}", IMAGE_TEMPLATE.read_text())
    assert match, name
    return match.group(1)


def manifest_files() -> list[Path]:
    return sorted(p for p in MANIFEST_DIR.glob("*.yaml") if p != KUSTOMIZATION)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def resource(kind: str) -> dict[str, Any]:
    """The one object of `kind` among the applied manifests."""
    found = [
        d
        for p in manifest_files()
        if not p.name.endswith(EXAMPLE_SUFFIX)
        for d in documents(p)
        if d["kind"] == kind
    ]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def container() -> dict[str, Any]:
    [only] = resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return only


def env_values() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"] if "value" in e}


def deployed_settings() -> ServiceSettings:
    """The settings the pods run with: the Deployment's literal env over the defaults.
    The Secrets' files exist only in a pod (their reading is tested on its own)."""
    secrets = {f"{ENV_PREFIX}API_KEY_FILE", f"{ENV_PREFIX}DECISION_STORE_URL_FILE"}
    env = {k: v for k, v in env_values().items() if k not in secrets}
    return ServiceSettings.from_env(env)


def quantity(text: str | int) -> float:
    """A Kubernetes quantity as a number (cores, or bytes)."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    assert match, text
    return float(match.group(1)) * units.get(match.group(2), 1)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_is_valid_against_the_kubernetes_api(path, version):
    docs = documents(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        # strict: an unknown or misspelt field is an error, not silently dropped.
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_refuses_a_misspelt_field():
    deployment = copy.deepcopy(resource("Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_applies_every_manifest_but_the_examples():
    kustomization = yaml.safe_load(KUSTOMIZATION.read_text())
    applied = {p.name for p in manifest_files() if not p.name.endswith(EXAMPLE_SUFFIX)}
    assert set(kustomization["resources"]) == applied
    [image] = kustomization["images"]
    # `images:` only rewrites the image it names: it must be the Deployment's.
    assert image["name"] == container()["image"].split(":")[0]
    assert image["newTag"] and image["newName"]


def test_kustomize_renders_valid_objects_with_the_image_set():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: cannot render the kustomization")
    result = subprocess.run(
        [kubectl, "kustomize", str(MANIFEST_DIR)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
    applied = [
        d["kind"]
        for p in manifest_files()
        if not p.name.endswith(EXAMPLE_SUFFIX)
        for d in documents(p)
    ]
    assert sorted(d["kind"] for d in rendered) == sorted(applied)
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)
    [image] = yaml.safe_load(KUSTOMIZATION.read_text())["images"]
    [deployment] = [d for d in rendered if d["kind"] == "Deployment"]
    [rendered_container] = deployment["spec"]["template"]["spec"]["containers"]
    assert rendered_container["image"] == f"{image['newName']}:{image['newTag']}"


def test_container_port_is_the_port_bentoml_serves_on():
    from bentoml._internal.configuration.containers import BentoMLContainer

    [port] = container()["ports"]
    assert port["containerPort"] == BentoMLContainer.http.port.get()
    service = resource("Service")
    [service_port] = service["spec"]["ports"]
    assert service["spec"]["type"] == "ClusterIP"
    assert service_port["targetPort"] in (port["name"], port["containerPort"])


def test_probe_paths_need_no_api_key():
    # With LOAN_API_KEY set, a probe that needed it would fail and restart the pod.
    for probe in PROBES:
        assert container()[probe]["httpGet"]["path"] in OPEN_PATHS, probe
    assert resource("Service")["metadata"]["annotations"]["prometheus.io/path"] in OPEN_PATHS


def test_probe_paths_answer_on_the_service_app(asgi_app, asgi_client):
    app, client = asgi_app, asgi_client
    probes = {container()[p]["httpGet"]["path"] for p in PROBES}
    # After start-up (model loaded) every probe answers 200.
    for path in sorted(probes):
        assert client.get(path).status_code == 200, path
    # A path that does not exist is not answered: the check above can fail.
    assert client.get("/no-such-probe").status_code == 404
    # /metrics needs the Prometheus set-up of `bentoml serve`, which the in-process
    # app lacks, so only its route is checked here.
    metrics = resource("Service")["metadata"]["annotations"]["prometheus.io/path"]
    assert metrics in {getattr(route, "path", None) for route in app.routes}


def test_every_env_var_is_one_the_service_reads():
    known = ServiceSettings.variable_names() | {TELEMETRY_ENV}
    names = [e["name"] for e in container()["env"]]
    assert set(names) <= known, set(names) - known
    assert len(names) == len(set(names))
    assert env_values()[TELEMETRY_ENV] == "true"
    deployed_settings()  # every literal value parses as the service would parse it


def test_api_key_is_a_file_from_a_required_secret():
    key_file = Path(env_values()[f"{ENV_PREFIX}API_KEY_FILE"])
    assert f"{ENV_PREFIX}API_KEY" not in {e["name"] for e in container()["env"]}
    [mount] = [m for m in container()["volumeMounts"] if Path(m["mountPath"]) == key_file.parent]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod_spec()["volumes"] if v["name"] == mount["name"]]
    secret = volume["secret"]
    # A lost Secret must keep the pod from starting, not start it without a key.
    assert secret["optional"] is False
    example = resource_from_example("Secret", "loan-approval-api-key")
    assert secret["secretName"] == example["metadata"]["name"]
    [item] = secret["items"]
    assert item["key"] in example["stringData"] and item["path"] == key_file.name
    # Readable by the pod's group (fsGroup), by no one else.
    assert secret["defaultMode"] & 0o007 == 0


def test_api_key_file_is_read_like_the_variable(tmp_path):
    key_file = tmp_path / "api-key"
    key_file.write_text("s3cret\n")
    name = f"{ENV_PREFIX}API_KEY_FILE"
    assert ServiceSettings.from_env({name: str(key_file)}).api_key == "s3cret"
    # A named file that is missing stops the service: it never opens the API.
    with pytest.raises(ValueError, match="cannot read it"):
        ServiceSettings.from_env({name: str(tmp_path / "absent")})
    key_file.write_text("")
    with pytest.raises(ValueError, match="empty"):
        ServiceSettings.from_env({name: str(key_file)})
    with pytest.raises(ValueError, match="not both"):
        ServiceSettings.from_env({name: str(key_file), f"{ENV_PREFIX}API_KEY": "k"})


def pod_spec() -> dict[str, Any]:
    return resource("Deployment")["spec"]["template"]["spec"]


def test_root_filesystem_is_read_only_but_bentoml_home_and_tmp():
    assert container()["securityContext"]["readOnlyRootFilesystem"] is True
    empty_dirs = {v["name"] for v in pod_spec()["volumes"] if "emptyDir" in v}
    writable = {m["mountPath"] for m in container()["volumeMounts"] if m["name"] in empty_dirs}
    # BentoML writes its Prometheus multiprocess folder under BENTOML_HOME.
    assert writable == {image_template_value("home"), "/tmp"}
    for volume in pod_spec()["volumes"]:
        if "emptyDir" in volume:
            assert volume["emptyDir"]["sizeLimit"], volume["name"]


def test_every_object_is_in_the_service_namespace():
    [namespace] = [d for p in manifest_files() for d in documents(p) if d["kind"] == "Namespace"]
    name = namespace["metadata"]["name"]
    assert name != "default"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert yaml.safe_load(KUSTOMIZATION.read_text())["namespace"] == name
    for path in manifest_files():
        for doc in documents(path):
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == name, (path.name, doc["kind"])


def test_the_decision_store_url_is_a_file_from_a_required_secret():
    url_file = Path(env_values()[f"{ENV_PREFIX}DECISION_STORE_URL_FILE"])
    assert f"{ENV_PREFIX}DECISION_STORE_URL" not in {e["name"] for e in container()["env"]}
    assert f"{ENV_PREFIX}DECISION_RECORDS" not in env_values()
    [mount] = [m for m in container()["volumeMounts"] if Path(m["mountPath"]) == url_file.parent]
    assert mount["readOnly"] is True
    [volume] = [v for v in pod_spec()["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["optional"] is False
    example = resource_from_example("Secret", volume["secret"]["secretName"])
    [item] = volume["secret"]["items"]
    assert item["path"] == url_file.name
    # The example is a PostgreSQL URL, which the service reads as its store.
    url = example["stringData"][item["key"]]
    assert url.startswith("postgresql://")
    assert DecisionStore(url).engine.dialect.name == "postgresql"


def test_network_policy_admits_the_serving_port_in_and_only_the_store_out():
    policy = resource("NetworkPolicy")["spec"]
    pod_labels = resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    # Egress only to PostgreSQL (the decision store) and DNS.
    ports = {(p["port"], p["protocol"]) for rule in policy["egress"] for p in rule["ports"]}
    assert ports == {(5432, "TCP"), (53, "UDP"), (53, "TCP")}
    assert all("to" not in rule or rule["to"] for rule in policy["egress"])
    [rule] = policy["ingress"]
    [port] = rule["ports"]
    assert port["port"] in {p["name"] for p in container()["ports"]}


def resource_from_example(kind: str, name: str | None = None) -> dict[str, Any]:
    [found] = [
        d
        for p in MANIFEST_DIR.glob(f"*{EXAMPLE_SUFFIX}")
        for d in documents(p)
        if d["kind"] == kind and name in (None, d["metadata"]["name"])
    ]
    return found


def test_resources_are_sized_for_the_worker_count():
    workers = deployed_settings().workers
    resources = container()["resources"]
    # One single-threaded worker keeps one core busy scoring a batch.
    assert quantity(resources["requests"]["cpu"]) == workers
    low, high = WORKER_RSS_MIB
    assert quantity(resources["requests"]["memory"]) >= workers * low * 2**20
    assert quantity(resources["limits"]["memory"]) >= workers * high * 2**20
    assert quantity(resources["limits"]["memory"]) >= quantity(resources["requests"]["memory"])


def test_grace_period_outlasts_the_pre_stop_sleep_and_a_request():
    pod = resource("Deployment")["spec"]["template"]["spec"]
    pre_stop = container()["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + deployed_settings().timeout_seconds


def test_runs_as_the_image_user_without_privileges():
    pod = resource("Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    # The image's user (tests/test_image.py checks the built image's USER too),
    # a high UID: no clash with the node's own users.
    assert pod["runAsUser"] == pod["runAsGroup"] == int(image_template_value("uid")) >= 10000
    security = container()["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]


def test_selectors_pick_the_deployments_pods():
    deployment = resource("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selectors = {
        "Deployment": deployment["spec"]["selector"]["matchLabels"],
        "Service": resource("Service")["spec"]["selector"],
        "PodDisruptionBudget": resource("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    }
    for constraint in deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]:
        selectors["topologySpread"] = constraint["labelSelector"]["matchLabels"]
    for owner, selector in selectors.items():
        assert selector and selector.items() <= pod_labels.items(), owner
    target = resource("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        deployment["kind"],
        deployment["metadata"]["name"],
    )


def test_autoscaler_keeps_room_for_a_disruption():
    hpa = resource("HorizontalPodAutoscaler")["spec"]
    pdb = resource("PodDisruptionBudget")["spec"]
    # Draining a node must be able to evict a pod without breaking the budget.
    assert hpa["minReplicas"] > pdb["minAvailable"]
    assert hpa["maxReplicas"] >= hpa["minReplicas"]
    [metric] = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    # The HPA computes CPU utilisation against the request, so there must be one.
    assert "cpu" in container()["resources"]["requests"]
    # The HPA owns the replica count; a fixed one would fight it on every apply.
    assert "replicas" not in resource("Deployment")["spec"]
