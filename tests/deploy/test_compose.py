"""docker-compose.yml, checked by Docker Compose itself (schema, interpolation, merge, profiles), plus the nginx,
Prometheus, Grafana and Keycloak files it mounts."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import crossplane  # type: ignore[import-untyped]
import pytest
import yaml

from .tools import COMPOSE_FILE, DEPLOY, REALM, REPO, compose_config, run, system_tool

APP_SERVICES = ("migrate", "api", "worker")
LONG_RUNNING = ("api", "worker", "nginx", "postgres", "redis", "keycloak", "prometheus", "grafana")
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "cml-cloud-manager.json"


@pytest.fixture(scope="module")
def base() -> dict[str, Any]:
    return compose_config()


@pytest.fixture(scope="module")
def full() -> dict[str, Any]:
    return compose_config("observability")


def seconds(value: str | int | float) -> float:
    if isinstance(value, int | float):
        return float(value) / 1e9 if value > 10_000 else float(value)  # compose JSON may give nanoseconds
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def test_every_profile_is_valid(base: dict[str, Any], full: dict[str, Any]) -> None:
    assert set(base["services"]) == {"migrate", "api", "worker", "nginx", "postgres", "redis", "keycloak"}
    assert set(full["services"]) == set(base["services"]) | {"prometheus", "grafana"}


def test_compose_rejects_what_the_spec_does_not_allow(tmp_path: Path) -> None:
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("  restart: unless-stopped\n  read_only", "  restrat: x\n  read_only")
    )
    with pytest.raises(AssertionError, match="additional properties 'restrat' not allowed"):
        compose_config(file=broken)


def test_services_scale(full: dict[str, Any]) -> None:
    """`--scale api=N --scale worker=M`: no fixed names, no host ports on the scaled services."""
    for name, service in full["services"].items():
        assert "container_name" not in service, f"{name}: container_name prevents --scale"
    for name in APP_SERVICES:
        assert not full["services"][name].get("ports"), f"{name} publishes a port: it could not scale"
    nginx_ports = full["services"]["nginx"]["ports"]
    assert [(p["published"], p["target"]) for p in nginx_ports] == [("8020", 8080)]


def test_published_port_follows_app_port() -> None:
    config = compose_config(env={"APP_PORT": "9443"})
    assert config["services"]["nginx"]["ports"][0]["published"] == "9443"
    assert config["services"]["api"]["environment"]["PUBLIC_URL"] == "http://localhost:9443"
    assert config["services"]["api"]["environment"]["APP_PORT"] == "8000", "inside the network it stays 8000"


def test_healthchecks_and_start_order(full: dict[str, Any]) -> None:
    services = full["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck", {})
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            if condition["condition"] == "service_healthy":
                assert services[dependency].get("healthcheck", {}).get("test"), f"{name} waits on {dependency}"
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy"
    assert services["nginx"]["depends_on"]["api"]["condition"] == "service_healthy"
    assert services["migrate"]["command"] == ["migrate"]
    assert services["migrate"]["restart"] == "no"


def test_app_containers_are_locked_down(base: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = base["services"][name]
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert "/tmp" in service["tmpfs"]
        assert service["environment"]["WORKER_MODE" if name != "migrate" else "APP_HOST"]
    assert base["services"]["api"]["environment"]["WORKER_MODE"] == "api"
    assert base["services"]["worker"]["environment"]["WORKER_MODE"] == "worker"


def test_stop_grace_exceeds_shutdown_grace(base: dict[str, Any]) -> None:
    for name in ("api", "worker"):
        service = base["services"][name]
        grace = float(service["environment"]["SHUTDOWN_GRACE_SECONDS"])
        assert seconds(service["stop_grace_period"]) > grace + 5, name


def test_bind_mounts_exist(full: dict[str, Any]) -> None:
    for name, service in full["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: {volume['source']} does not exist"
                assert volume.get("read_only"), f"{name}: mount {volume['source']} read-only"


def test_interpolation_variables_are_documented() -> None:
    names = set(re.findall(r"\$\{(\w+)", COMPOSE_FILE.read_text()))
    docs = (REPO / "docs" / "deployment.md").read_text()
    missing = sorted(name for name in names if f"`{name}`" not in docs)
    assert not missing, f"docs/deployment.md does not describe {missing}"


def test_forwarded_headers_are_believed_from_nginx_alone(base: dict[str, Any]) -> None:
    """The API takes X-Forwarded-For/-Proto from its proxy's fixed address and no other peer (not "*")."""
    for env, expected in (({}, "172.30.253.10"), ({"NGINX_ADDRESS": "10.9.8.7", "STACK_SUBNET": "10.9.8.0/24"}, "")):
        config = compose_config(env=env) if env else base
        nginx = config["services"]["nginx"]["networks"]["default"]["ipv4_address"]
        subnet = ipaddress.ip_network(config["networks"]["default"]["ipam"]["config"][0]["subnet"])
        assert ipaddress.ip_address(nginx) in subnet
        assert nginx == (expected or env["NGINX_ADDRESS"])
        for name in APP_SERVICES:
            assert config["services"][name]["environment"]["FORWARDED_ALLOW_IPS"] == nginx, name
    for name, service in base["services"].items():
        if name != "nginx":
            assert "ipv4_address" not in str(service.get("networks", "")), f"{name} would take nginx's place"


# --- Keycloak ------------------------------------------------------------------------------------------------


def test_keycloak_imports_the_realm_the_api_uses(base: dict[str, Any]) -> None:
    keycloak = base["services"]["keycloak"]
    assert "--import-realm" in keycloak["command"]
    mounts = {v["target"]: Path(v["source"]) for v in keycloak["volumes"]}
    assert mounts["/opt/keycloak/data/import/cml-realm.json"] == REALM
    realm = json.loads(REALM.read_text())
    env = base["services"]["api"]["environment"]
    assert env["OIDC_ISSUER"] == f"{keycloak['environment']['KC_HOSTNAME']}/realms/{realm['realm']}"
    assert env["OIDC_DISCOVERY_URL"] == f"http://keycloak:8080/realms/{realm['realm']}/.well-known/openid-configuration"
    client = next(c for c in realm["clients"] if c["clientId"] == env["OIDC_CLIENT_ID"])
    assert client["publicClient"] is False
    assert client["secret"] == env["OIDC_CLIENT_SECRET"], "the default secret matches the imported realm"
    assert f"{env['PUBLIC_URL']}/auth/callback" in client["redirectUris"]


# --- nginx ---------------------------------------------------------------------------------------------------


def _directives(block: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in block if d["directive"] == name]


def _one(block: list[dict[str, Any]], name: str) -> list[str]:
    found = _directives(block, name)
    assert len(found) == 1, f"expected one {name}, found {len(found)}"
    args: list[str] = found[0]["args"]
    return args


@pytest.fixture(scope="module")
def nginx() -> list[dict[str, Any]]:
    parsed = crossplane.parse(str(NGINX_CONF), check_ctx=True, check_args=True, single=True)
    assert parsed["status"] == "ok", parsed["errors"]
    config: list[dict[str, Any]] = parsed["config"][0]["parsed"]
    return config


def test_nginx_parser_catches_errors(tmp_path: Path) -> None:
    broken = tmp_path / "nginx.conf"
    broken.write_text(NGINX_CONF.read_text().replace("proxy_buffering off;", "proxy_buffering;"))
    parsed = crossplane.parse(str(broken), check_ctx=True, check_args=True, single=True)
    assert parsed["status"] == "failed"


def test_nginx_proxies_sse_safely(nginx: list[dict[str, Any]], base: dict[str, Any]) -> None:
    http = _directives(nginx, "http")[0]["block"]
    assert _one(http, "resolver")[0] == "127.0.0.11", "Docker's DNS, re-read so scaled replicas are found"
    upstream = _directives(http, "upstream")[0]
    servers = _directives(upstream["block"], "server")
    assert [s["args"] for s in servers] == [["api:8000", "resolve"]]
    assert base["services"]["api"]["environment"]["APP_PORT"] == "8000"
    assert _one(upstream["block"], "keepalive")
    assert _directives(upstream["block"], "zone"), "`resolve` needs a shared-memory zone"
    server = _directives(http, "server")[0]["block"]
    assert _one(server, "listen") == ["8080"]
    assert _one(server, "proxy_http_version") == ["1.1"]
    headers = {tuple(d["args"][:1]): d["args"][1:] for d in _directives(server, "proxy_set_header")}
    assert headers[("Connection",)] == [""]
    assert ("X-Forwarded-Proto",) in headers and ("X-Forwarded-For",) in headers
    locations = {tuple(d["args"]): d["block"] for d in _directives(server, "location")}
    stream = locations[("=", "/api/events/stream")]
    assert _one(stream, "proxy_buffering") == ["off"]
    assert seconds(_one(stream, "proxy_read_timeout")[0]) >= 600
    assert not _directives(stream, "proxy_set_header"), "a proxy_set_header here would drop the inherited ones"
    assert _one(stream, "proxy_pass") == [f"http://{upstream['args'][0]}"]
    assert _one(locations[("/",)], "proxy_pass") == [f"http://{upstream['args'][0]}"]
    assert ("=", "/metrics") in locations, "metrics stay off the public proxy"


def test_nginx_image_supports_upstream_resolve(base: dict[str, Any]) -> None:
    image = base["services"]["nginx"]["image"]
    major, minor = (int(x) for x in re.match(r"nginx:(\d+)\.(\d+)", image).groups())  # type: ignore[union-attr]
    assert (major, minor) >= (1, 28), "`server ... resolve` in an upstream needs nginx 1.27.3+ (stable 1.28)"
    mount = next(v for v in base["services"]["nginx"]["volumes"] if v["target"] == "/etc/nginx/nginx.conf")
    assert Path(mount["source"]) == NGINX_CONF


# --- Prometheus and Grafana ----------------------------------------------------------------------------------


def test_promtool_accepts_the_config() -> None:
    result = run([system_tool("promtool", "prometheus"), "check", "config", "--syntax-only", PROMETHEUS])
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_discovers_every_replica(full: dict[str, Any]) -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    env = full["services"]["api"]["environment"]
    for job, service, port in (
        ("cml-api", "api", env["APP_PORT"]),
        ("cml-worker", "worker", env["WORKER_HEALTH_PORT"]),
    ):
        sd = jobs[job]["dns_sd_configs"]
        assert sd == [{"names": [service], "type": "A", "port": int(port), "refresh_interval": "15s"}]
        assert jobs[job]["metrics_path"] == "/metrics"
    mounts = {v["target"]: Path(v["source"]) for v in full["services"]["prometheus"]["volumes"] if v["type"] == "bind"}
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS


def _registered_metrics() -> set[str]:
    from prometheus_client import REGISTRY

    import cml_cloud_manager.apps.http_metrics
    import cml_cloud_manager.events.relay
    import cml_cloud_manager.health.endpoints
    import cml_cloud_manager.jobs.commands
    import cml_cloud_manager.jobs.scheduler  # noqa: F401

    return set(REGISTRY._names_to_collectors)


PENDING_METRICS: set[str] = set()
PROMQL_WORDS = {
    "sum", "max", "min", "avg", "count", "by", "without", "rate", "increase", "irate", "histogram_quantile",
    "le", "offset", "and", "or", "unless", "on", "ignoring", "group_left", "group_right", "bool", "topk",
}  # fmt: skip


def _expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_dashboard_charts_existing_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    expressions = _expressions()
    registered = _registered_metrics()
    used: set[str] = set()
    for expr in expressions:
        bare = re.sub(r"\{[^}]*\}|\[[^]]*\]|\"[^\"]*\"|\bby\s*\([^)]*\)", " ", expr)
        used |= {w for w in re.findall(r"[A-Za-z_:][\w:]*", bare) if w not in PROMQL_WORDS}
    unknown = used - registered - PENDING_METRICS
    assert not unknown, f"the dashboard queries metrics the app does not export: {sorted(unknown)}"
    for needed in (
        "http_request_duration_seconds_bucket",
        "sse_clients_active",
        "job_duration_seconds_bucket",
        "job_executions_total",
        "fleet_cpu_percent_avg",
    ):
        assert needed in used, f"the dashboard should chart {needed}"
    jobs = {m for expr in expressions for m in re.findall(r'job="([^"]+)"', expr)}
    assert jobs <= {j["job_name"] for j in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]}


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query{i}", "expr": expr.replace("$__rate_interval", "1m").replace("$__range", "1h")}
        for i, expr in enumerate(_expressions())
    ]}]}  # fmt: skip
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([system_tool("promtool", "prometheus"), "check", "rules", path])
    assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_is_provisioned(full: dict[str, Any]) -> None:
    mounts = {v["target"]: Path(v["source"]) for v in full["services"]["grafana"]["volumes"] if v["type"] == "bind"}
    provisioning = mounts["/etc/grafana/provisioning"]
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert datasources == [d for d in datasources if d["type"] == "prometheus"] and len(datasources) == 1
    assert datasources[0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "cml-cloud-manager.yml").read_text())["providers"]
    dashboards_dir = providers[0]["options"]["path"]
    assert mounts[dashboards_dir] == DASHBOARD.parent
    uid = datasources[0]["uid"]
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
