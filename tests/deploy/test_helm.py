"""The Helm chart: `helm lint`, rendering with Helm's engine (helm-python-sdk embeds Helm 4), every manifest
validated against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), and what the manifests must say."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from .tools import AWS_ENV, CHART, CHART_MANAGED, SETTINGS, container_env, helm_module, helm_render

FULL_VALUES: dict[str, Any] = {
    "image": {"repository": "registry.example.com/cml-cloud-manager", "tag": "1.2.3"},
    "imagePullSecrets": [{"name": "registry"}],
    "settings": {
        "MAX_REQUEST_BYTES": 5242880,
        "OIDC_ROLE_MAP": {"cml-admin": "admin", "cml-viewer": "viewer"},
        "CML_INSTANCE_TAGS": {"team": "netops"},
        "AUTO_IMPORT_ENABLED": True,
    },
    "authTokensSecret": {"name": "cml-tokens"},
    "extraEnv": [{"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"}],
    "extraEnvFrom": [{"secretRef": {"name": "more-settings"}}],
    "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/cml"}},
    "api": {
        "autoscaling": {"enabled": True, "minReplicas": 3, "maxReplicas": 9},
        "podAnnotations": {"example.com/team": "netops"},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "api"}}}
        ],
    },
    "worker": {"replicaCount": 3, "nodeSelector": {"kubernetes.io/os": "linux"}},
    "ingress": {"enabled": True, "tls": [{"secretName": "cml-tls", "hosts": ["cml-cloud-manager.example.com"]}]},
    "forwardedAllowIps": "10.42.0.0/16",
    "metrics": {"serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}}},
}  # fmt: skip
TOKEN_VALUES: dict[str, Any] = {
    "settings": {"AUTH_MODE": "token", "OIDC_ISSUER": None, "OIDC_CLIENT_ID": None},
    "secretEnv": {"OIDC_CLIENT_SECRET": None, "CML_PASSWORD": None},
    "migrate": {"enabled": False},
    "api": {"pdb": {"enabled": False}, "replicaCount": 1},
    "worker": {"pdb": {"enabled": False}, "replicaCount": 1},
}
VALUE_SETS = {"defaults": {}, "full": FULL_VALUES, "token": TOKEN_VALUES}
SERVICE_MONITOR_SCHEMA = json.loads((Path(__file__).parent / "servicemonitor.schema.json").read_text())


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def named(docs: list[dict[str, Any]], kind: str, suffix: str) -> dict[str, Any]:
    found = [d for d in by_kind(docs, kind) if d["metadata"]["name"].endswith(suffix)]
    assert len(found) == 1, f"one {kind} *{suffix}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module", params=list(VALUE_SETS))
def rendered(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, helm_render(VALUE_SETS[request.param])


def test_lint_strict() -> None:
    helm = helm_module()
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.30.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, f"{name}: {report}"


def test_manifests_match_kubernetes_schemas(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    import kubernetes_validate

    name, docs = rendered
    versions = ["1.25.0", kubernetes_validate.utils.latest_version()]
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} on {version}: {path}: {exc.message}")


def test_validator_catches_a_misspelt_field() -> None:
    import kubernetes_validate

    deployment = named(helm_render(), "Deployment", "-api")
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, "1.30.0", strict=True)


def test_kinds(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    kinds = sorted(d["kind"] for d in docs)
    expected = {
        "defaults": ["Deployment", "Deployment", "Job", "PodDisruptionBudget", "PodDisruptionBudget", "Service",
                     "Service", "ServiceAccount"],
        "full": ["Deployment", "Deployment", "HorizontalPodAutoscaler", "Ingress", "Job", "PodDisruptionBudget",
                 "PodDisruptionBudget", "Service", "Service", "ServiceAccount", "ServiceMonitor", "ServiceMonitor"],
        "token": ["Deployment", "Deployment", "Service", "Service", "ServiceAccount"],
    }[name]  # fmt: skip
    assert kinds == expected


def _pod(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def _matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


# Liveness never asks the database or Redis (an outage of either must not restart every replica at once).
PROBES = {"startupProbe": "live", "readinessProbe": "ready", "livenessProbe": "live"}


def test_api_deployment(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    name, docs = rendered
    api = named(docs, "Deployment", "-api")
    pod = _pod(api)
    (container,) = pod["containers"]
    assert container["args"] == ["api"]
    (port,) = container["ports"]
    assert port["name"] == "http" and str(port["containerPort"]) == container_env(container)["APP_PORT"]
    for probe, path in PROBES.items():
        assert container[probe]["httpGet"] == {"path": f"/api/health/{path}", "port": "http"}, probe
    hpa = by_kind(docs, "HorizontalPodAutoscaler")
    if name == "full":
        assert "replicas" not in api["spec"], "the HPA owns the replica count"
        assert hpa[0]["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": api["metadata"]["name"],
        }
        assert hpa[0]["spec"]["minReplicas"] == 3
    else:
        assert not hpa and api["spec"]["replicas"] == (2 if name == "defaults" else 1)
    assert api["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    service = named(docs, "Service", "-api")
    assert _matches(service["spec"]["selector"], api["spec"]["template"]["metadata"]["labels"])
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_worker_deployment(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    worker = named(docs, "Deployment", "-worker")
    (container,) = _pod(worker)["containers"]
    assert container["args"][:2] == ["worker", "--health-port"]
    (port,) = container["ports"]
    assert port["name"] == "health" and str(port["containerPort"]) == container["args"][2]
    for probe, path in PROBES.items():
        assert container[probe]["httpGet"] == {"path": f"/health/{path}", "port": "health"}, probe
    env = container_env(container)
    assert env["WORKER_MODE"] == "worker" and env["WORKER_HEALTH_HOST"] == "0.0.0.0"
    service = named(docs, "Service", "-worker")
    assert service["spec"]["clusterIP"] == "None"
    assert _matches(service["spec"]["selector"], worker["spec"]["template"]["metadata"]["labels"])


def test_pods_are_locked_down(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    pods = [_pod(d) for d in by_kind(docs, "Deployment")] + [
        d["spec"]["template"]["spec"] for d in by_kind(docs, "Job")
    ]
    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
        assert "emptyDir" in tmp
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
            assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
            assert container_env(container)["AUTH_ADMIN_TOKEN_FILE"].startswith("/tmp/"), "the only writable path"


def test_termination_grace_exceeds_shutdown_grace(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for deployment in by_kind(docs, "Deployment"):
        pod = _pod(deployment)
        (container,) = pod["containers"]
        grace = float(container_env(container)["SHUTDOWN_GRACE_SECONDS"])
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", ["sleep", "0"])
        assert pre_stop[0] == "sleep"
        assert pod["terminationGracePeriodSeconds"] > grace + float(pre_stop[1]) + 5, deployment["metadata"]["name"]


def test_disruption_budgets_select_their_pods(rendered: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = rendered
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        component = pdb["metadata"]["name"].rsplit("-", 1)[1]
        deployment = named(docs, "Deployment", f"-{component}")
        assert _matches(pdb["spec"]["selector"]["matchLabels"], deployment["spec"]["template"]["metadata"]["labels"])
        assert pdb["spec"]["maxUnavailable"] == 1


def test_migration_job_is_a_pre_install_and_pre_upgrade_hook() -> None:
    docs = helm_render()
    job = named(docs, "Job", "-migrate")
    annotations = job["metadata"]["annotations"]
    assert set(annotations["helm.sh/hook"].split(",")) == {"pre-install", "pre-upgrade"}
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert "serviceAccountName" not in pod, "hooks run before the chart's ServiceAccount exists"
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]
    env = {e["name"]: e for e in container["env"]}
    assert "WORKER_MODE" not in env
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "cml-cloud-manager",
        "key": "DATABASE_URL",
        "optional": False,
    }
    api_env = {e["name"] for e in _pod(named(docs, "Deployment", "-api"))["containers"][0]["env"]}
    assert set(env) == api_env - {"WORKER_MODE"}, "the job migrates the database the pods use"
    assert not any(d["kind"] in ("ConfigMap", "Secret") for d in docs), "a hook could not read them on install"


def test_secrets_come_from_existing_secrets() -> None:
    docs = helm_render(FULL_VALUES)
    (container,) = _pod(named(docs, "Deployment", "-api"))["containers"]
    env = {e["name"]: e for e in container["env"]}
    refs = {n: e["valueFrom"]["secretKeyRef"] for n, e in env.items() if "valueFrom" in e}
    assert set(refs) == {
        "DATABASE_URL",
        "REDIS_URL",
        "OIDC_CLIENT_SECRET",
        "SESSION_ENCRYPTION_KEYS",
        "CML_PASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert refs["DATABASE_URL"]["optional"] is False and refs["CML_PASSWORD"]["optional"] is True
    assert all(r["name"] == "cml-cloud-manager" for r in refs.values())
    assert container["envFrom"] == [{"secretRef": {"name": "more-settings"}}]
    assert env["MAX_REQUEST_BYTES"]["value"] == "5242880"
    assert json.loads(env["OIDC_ROLE_MAP"]["value"]) == {"cml-admin": "admin", "cml-viewer": "viewer"}
    assert env["AUTO_IMPORT_ENABLED"]["value"] == "true"
    assert env["AUTH_TOKENS_FILE"]["value"] == "/etc/cml-cloud-manager/tokens/tokens"
    assert env["AWS_STS_REGIONAL_ENDPOINTS"]["value"] == "regional"
    mount = next(m for m in container["volumeMounts"] if m["name"] == "auth-tokens")
    assert mount["readOnly"] is True and env["AUTH_TOKENS_FILE"]["value"].startswith(mount["mountPath"])
    override = helm_render({"secretEnv": {"CML_PASSWORD": {"name": "cml-hosts", "key": "password"}}})
    (container,) = _pod(named(override, "Deployment", "-worker"))["containers"]
    ref = next(e for e in container["env"] if e["name"] == "CML_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "cml-hosts", "key": "password", "optional": True}, "merged with the default entry"


def test_ingress_is_sse_friendly() -> None:
    docs = helm_render(FULL_VALUES)
    ingress = by_kind(docs, "Ingress")[0]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": named(docs, "Service", "-api")["metadata"]["name"], "port": {"name": "http"}}
    assert ingress["spec"]["tls"][0]["secretName"] == "cml-tls"


def test_service_monitors_scrape_both_roles() -> None:
    docs = helm_render(FULL_VALUES)
    monitors = by_kind(docs, "ServiceMonitor")
    assert len(monitors) == 2
    for monitor in monitors:
        component = monitor["metadata"]["name"].rsplit("-", 1)[1]
        service = named(docs, "Service", f"-{component}")
        assert _matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert not by_kind(helm_render(), "ServiceMonitor"), "off by default: the CRD may not exist"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"settings": {"AUTH_MOED": "oidc"}}, "AUTH_MOED"),
        ({"settings": {"APP_HOST": "127.0.0.1"}}, "APP_HOST"),
        ({"settings": {"AUTH_MODE": "none"}}, "AUTH_MODE"),
        ({"api": {"replicas": 3}}, "replicas"),
        ({"secretEnv": {"DATABASE_URI": {}}}, "DATABASE_URI"),
        ({"settings": {"DATABASE_URL": "postgresql+asyncpg://x"}}, "both settings and secretEnv"),
        ({"existingSecret": ""}, "set existingSecret"),
        ({"authTokensSecret": {"name": "t"}, "settings": {"AUTH_TOKENS_FILE": "/x"}}, "AUTH_TOKENS_FILE"),
        ({"ingress": {"enabled": True}}, "forwardedAllowIps: set it to the ingress controller"),
        ({"forwardedAllowIps": "*"}, "forwardedAllowIps"),
        ({"forwardedAllowIps": "ingress-nginx"}, "forwardedAllowIps"),
        ({"settings": {"FORWARDED_ALLOW_IPS": "*"}}, "FORWARDED_ALLOW_IPS"),
    ],
)
def test_bad_values_are_refused(values: dict[str, Any], message: str) -> None:
    helm = helm_module()
    with pytest.raises(helm.HelmError, match=message):
        helm_render(values)


@pytest.mark.parametrize("values_name", list(VALUE_SETS))
def test_forwarded_headers_are_believed_from_the_ingress_alone(values_name: str) -> None:
    values = VALUE_SETS[values_name]
    for doc in helm_render(values):
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                trusted = container_env(container)["FORWARDED_ALLOW_IPS"]
                assert trusted == values.get("forwardedAllowIps", ""), "empty (no peer) unless the values list some"


def test_values_schema_knows_every_setting() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    settings_names = set(schema["properties"]["settings"]["propertyNames"]["enum"])
    assert settings_names == SETTINGS - CHART_MANAGED, "run: .venv/bin/python deploy/helm/sync_schema.py"
    secret_names = set(schema["properties"]["secretEnv"]["propertyNames"]["enum"])
    assert secret_names == (SETTINGS - CHART_MANAGED) | AWS_ENV


def test_null_drops_a_secret_entry() -> None:
    (container,) = _pod(named(helm_render(TOKEN_VALUES), "Deployment", "-api"))["containers"]
    names = {e["name"] for e in container["env"]}
    assert "CML_PASSWORD" not in names and "OIDC_CLIENT_SECRET" not in names and "OIDC_ISSUER" not in names
    assert "DATABASE_URL" in names
