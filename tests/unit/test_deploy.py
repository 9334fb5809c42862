"""deploy/ agrees with the code it deploys: metric and label names, settings, queues, roles,
ports and commands. No services: these tests only read the files and import the modules
that define the names."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from shared import metrics
from shared.settings import Settings
from switchboard.cli import build_parser
from switchboard.processes import ROLES
from switchboard.stack import worker_queues

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
# Labels Prometheus puts on every series it scrapes; `role` comes from our scrape configs.
TARGET_LABELS = frozenset({"job", "instance", "role"})
SCRAPE_JOB = "switchboard"
# orchestrator/tasks.py publishes agent tasks with time_limit = deadline + 5 s: the
# longest an agent task can keep a warm shutdown waiting.
AGENT_HARD_LIMIT_MARGIN_S = 5.0


# --- loading --------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(DEPLOY / "compose.yaml")
    return data


@cache
def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(DEPLOY / "prometheus" / "rules.yml")["groups"] for rule in group["rules"]]


@cache
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DEPLOY / "grafana" / "dashboard.json").read_text())
    return data


@cache
def kustomization() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(K8S / "kustomization.yaml")
    return data


@cache
def k8s_objects() -> list[dict[str, Any]]:
    """Everything kustomization.yaml applies, plus the example Secret it expects."""
    files = [*kustomization()["resources"], "secret.example.yaml"]
    return [doc for name in files for doc in yaml.safe_load_all((K8S / name).read_text()) if doc]


def k8s_kind(kind: str) -> list[dict[str, Any]]:
    return [o for o in k8s_objects() if o["kind"] == kind]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as compose and kustomize read them (single quotes are literal)."""
    pairs: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            pairs[key.strip()] = value
    return pairs


def interpolate(text: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return re.sub(r"\$\{\w+(?::?-([^}]*))?\}", lambda m: m.group(1) or "", text)


def switchboard_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose()["services"].items() if s.get("command", [None])[0] == "switchboard"}


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def pod_containers() -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) for every Deployment and Job."""
    for obj in k8s_kind("Deployment") + k8s_kind("Job"):
        pod = obj["spec"]["template"]["spec"]
        for container in pod["containers"]:
            yield obj, pod, container


def container_env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def role_of(args: list[str]) -> str:
    parsed = build_parser().parse_args(args[1:])
    return str(parsed.role) if parsed.command == "worker" else str(parsed.command)


# --- metric names in PromQL ----------------------------------------------------------------


@cache
def exposed_series() -> dict[str, frozenset[str]]:
    """Every series name shared/metrics.py exposes, with its label names."""
    series: dict[str, frozenset[str]] = {}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        labels = frozenset(getattr(obj, "_labelnames", ()))
        for family in obj.describe():
            if family.type == "counter":
                series[f"{family.name}_total"] = labels
            elif family.type == "histogram":
                series[f"{family.name}_bucket"] = labels | {"le"}
                series[f"{family.name}_sum"] = series[f"{family.name}_count"] = labels
            elif family.type == "summary":
                series[family.name] = labels | {"quantile"}
                series[f"{family.name}_sum"] = series[f"{family.name}_count"] = labels
            else:
                series[family.name] = labels
    for name, label_names in metrics.SCRAPE_TIME_GAUGES.items():  # read from Postgres at each scrape
        series[name] = frozenset(label_names)
    return series


@cache
def recorded() -> dict[str, str]:
    return {r["record"]: r["expr"] for r in rules() if "record" in r}


def promql_expressions() -> list[tuple[str, str]]:
    """(where, expr) for every rule and every dashboard query."""
    exprs = [(r.get("record") or r["alert"], str(r["expr"])) for r in rules()]
    for panel in dashboard()["panels"]:
        exprs += [(f"panel {panel['title']!r}", t["expr"]) for t in panel.get("targets", [])]
    return exprs


def series_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(switchboard[_:][A-Za-z0-9_:]*|up)\b(?!\s*\()", expr))


def grouping_labels(expr: str) -> set[str]:
    found = re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr)
    return {label.strip() for group in found for label in group.split(",") if label.strip()}


def matchers(expr: str) -> Iterator[tuple[str, str, str, str]]:
    """(series, label, operator, value) for every label matcher."""
    for name, body in re.findall(r"\b(switchboard_[A-Za-z0-9_]+|up)\s*\{([^}]*)\}", expr):
        for label, op, value in re.findall(r'(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"', body):
            yield name, label, op, value


def output_labels(expr: str) -> frozenset[str] | None:
    """Labels an expression's result carries, for the shapes rules.yml uses; None: unknown."""
    expr = expr.strip()
    if m := re.match(r"(?:sum|max|min|avg|count)\s+by\s*\(([^)]*)\)", expr):
        return frozenset(label.strip() for label in m.group(1).split(","))
    if m := re.match(r"histogram_quantile\([^,]+,\s*sum\s+by\s*\(([^)]*)\)", expr):
        return frozenset(label.strip() for label in m.group(1).split(",")) - {"le"}
    name = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", expr)
    if name is None:
        return None
    if name.group(0) in recorded():
        return output_labels(recorded()[name.group(0)])
    if name.group(0) == "up":
        return TARGET_LABELS
    if name.group(0) in exposed_series():
        return exposed_series()[name.group(0)] | TARGET_LABELS
    return None


@cache
def code_strings() -> frozenset[str]:
    """Every string literal in the code that emits metrics: the label values it can use."""
    found: set[str] = set()
    for package in ("orchestrator", "agents", "shared"):
        for path in (ROOT / package).rglob("*.py"):
            nodes = ast.walk(ast.parse(path.read_text()))
            found |= {n.value for n in nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    return frozenset(found)


def test_every_metric_in_rules_and_dashboard_is_defined_in_shared_metrics() -> None:
    for where, expr in promql_expressions():
        for name in series_names(expr) - {"up"}:
            if ":" in name:
                assert name in recorded(), f"{where}: {name} is recorded by no rule in rules.yml"
            else:
                assert name in exposed_series(), f"{where}: {name} is not a series of shared/metrics.py"


def test_every_label_in_rules_and_dashboard_exists_on_the_metric() -> None:
    for where, expr in promql_expressions():
        for name, label, _, _ in matchers(expr):
            known = TARGET_LABELS if name == "up" else exposed_series()[name] | TARGET_LABELS
            assert label in known, f"{where}: {name} has no label {label!r}"
        raw = [exposed_series()[n] for n in series_names(expr) if n in exposed_series()]
        # A recorded series carries the labels its rule keeps (an alert may join on them).
        raw += [labels for n in series_names(expr) if n in recorded() and (labels := output_labels(n)) is not None]
        if raw:
            known = frozenset().union(*raw) | TARGET_LABELS
            assert grouping_labels(expr) <= known, f"{where}: groups by a label none of its metrics has"


def test_label_values_in_rules_and_dashboard_are_values_the_code_emits() -> None:
    for where, expr in promql_expressions():
        for name, label, op, value in matchers(expr):
            if name != "up" and op == "=":
                assert value in code_strings(), f"{where}: the code never sets {name}{{{label}={value!r}}}"


def test_alert_annotations_only_use_labels_the_alert_carries() -> None:
    for rule in rules():
        if "alert" not in rule:
            continue
        used = set(re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"])))
        carried = output_labels(str(rule["expr"]))
        if used and carried is not None:
            assert used <= carried | rule.get("labels", {}).keys(), f"{rule['alert']}: {used - carried}"


def test_every_metric_is_on_the_dashboard() -> None:
    shown = {
        name for panel in dashboard()["panels"] for t in panel.get("targets", []) for name in series_names(t["expr"])
    }
    for obj in vars(metrics).values():
        if isinstance(obj, MetricWrapperBase):
            (family,) = (f.name for f in obj.describe())
            assert any(s.startswith(family) for s in shown), f"{family} has no panel on the dashboard"
    for name in metrics.SCRAPE_TIME_GAUGES:
        assert name in shown, f"{name} has no panel on the dashboard"


def test_recorded_series_are_unique_and_named_level_metric_operation() -> None:
    names = [r["record"] for r in rules() if "record" in r]
    assert len(names) == len(set(names))
    assert all(re.fullmatch(r"switchboard:[a-z0-9_]+:[a-z0-9_]+", n) for n in names), names


def test_every_alert_has_a_severity_and_a_runbook_documented_in_the_readme() -> None:
    readme = (DEPLOY / "README.md").read_text()
    alerts = [r for r in rules() if "alert" in r]
    assert len(alerts) >= 7
    for rule in alerts:
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert str(rule["annotations"].get(key, "")).strip(), f"{rule['alert']} has no {key}"
        assert rule["alert"] in readme, f"{rule['alert']} is not explained in deploy/README.md"


def test_alerts_match_the_scrape_job_name() -> None:
    jobs = {
        c["job_name"]
        for f in ("prometheus.yml", "kubernetes-scrape.yml")
        for c in load_yaml(DEPLOY / "prometheus" / f)["scrape_configs"]
    }
    for where, expr in promql_expressions():
        for name, label, _, value in matchers(expr):
            if name == "up" and label == "job":
                assert value == SCRAPE_JOB in jobs, where


# --- settings -----------------------------------------------------------------------------


def deployed_env_names() -> Iterator[tuple[str, str]]:
    for name, service in compose()["services"].items():
        yield from ((f"compose {name}", key) for key in service_env(service))
    yield from ((".env.example", key) for key in env_file(DEPLOY / ".env.example"))
    yield from (("k8s switchboard.env", key) for key in env_file(K8S / "switchboard.env"))
    for secret in k8s_kind("Secret"):
        yield from ((f"k8s Secret {secret['metadata']['name']}", key) for key in secret["stringData"])
    for obj, _, container in pod_containers():
        yield from ((f"k8s {obj['metadata']['name']}", key) for key in container_env(container))


def test_every_switchboard_env_var_is_a_setting() -> None:
    names = [(where, key) for where, key in deployed_env_names() if key.startswith("SWITCHBOARD_")]
    assert len(names) > 10
    for where, key in names:
        assert key.removeprefix("SWITCHBOARD_").lower() in Settings.model_fields, f"{where}: {key} is no setting"


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(lambda: env_file(DEPLOY / ".env.example"), id="compose .env.example"),
        pytest.param(
            lambda: {**env_file(K8S / "switchboard.env"), **k8s_kind("Secret")[0]["stringData"]}, id="k8s config+secret"
        ),
    ],
)
def test_example_configuration_is_accepted_by_settings(values: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("SWITCHBOARD_"):
            monkeypatch.delenv(key)
    for key, value in values().items():
        if key.startswith("SWITCHBOARD_"):
            monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.sources, "the example configures no helpdesk"
    assert all(source.callback_url for source in settings.sources.values())


# --- compose --------------------------------------------------------------------------------


def test_compose_runs_one_worker_per_role_with_a_command_the_cli_accepts() -> None:
    roles = []
    for name, service in switchboard_services().items():
        args = [interpolate(str(a)) for a in service["command"]]
        role = role_of(args)
        if args[1] == "worker":
            assert role in ROLES, f"{name}: unknown role {role}"
            roles.append(role)
    assert sorted(roles) == sorted(ROLES)


def test_compose_processes_are_scraped_on_the_port_they_serve_metrics_on() -> None:
    scraped = {
        (sd["names"][0], sd["port"])
        for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]
        if job["job_name"] == SCRAPE_JOB
        for sd in job["dns_sd_configs"]
    }
    served = set()
    for name, service in switchboard_services().items():
        args = build_parser().parse_args([interpolate(str(a)) for a in service["command"]][1:])
        env = service_env(service)
        if args.command == "worker":
            assert env.get("SWITCHBOARD_METRICS_HOST") == "0.0.0.0", f"{name} serves metrics on loopback only"
            served.add((name, int(env["SWITCHBOARD_METRICS_PORT"])))
        elif args.command == "api":
            served.add((name, args.port or Settings().api_port))
    assert served == scraped
    assert len({port for _, port in served}) == len(served), "two processes share a metrics port"


def test_compose_services_wait_for_the_migration_and_get_both_servers() -> None:
    for name, service in switchboard_services().items():
        env = service_env(service)
        assert env["SWITCHBOARD_DATABASE_URL"].startswith("postgresql://"), name
        if name == "migrate":
            continue
        assert env["SWITCHBOARD_BROKER_URL"].startswith("redis://"), name
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def warm_shutdown_s() -> float:
    s = Settings()
    return max(
        max([s.agent_deadline_s, *s.agent_deadlines_s.values()]) + AGENT_HARD_LIMIT_MARGIN_S, s.delivery_timeout_s
    )


def test_compose_workers_get_time_for_a_warm_shutdown() -> None:
    for name, service in switchboard_services().items():
        if service["command"][1] == "worker":
            grace = service["stop_grace_period"]
            assert grace.endswith("s") and float(grace[:-1]) >= 2 * warm_shutdown_s(), name


def test_compose_mounts_the_rules_and_the_dashboard_where_the_configs_expect_them() -> None:
    services = compose()["services"]
    prom_mounts = dict(
        v.rsplit(":", 1)[0].split(":", 1) for v in services["prometheus"]["volumes"] if v.startswith(".")
    )
    config = Path(prom_mounts["./prometheus/prometheus.yml"])
    assert f"--config.file={config}" in services["prometheus"]["command"]
    for rule_file in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["rule_files"]:
        assert (DEPLOY / "prometheus" / rule_file).exists()
        assert prom_mounts[f"./prometheus/{rule_file}"] == str(config.parent / rule_file)
    provider = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "switchboard.yaml")["providers"][0]
    grafana = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["grafana"]["volumes"] if v.startswith("."))
    assert Path(grafana["./grafana/dashboard.json"]).parent == Path(provider["options"]["path"])
    assert grafana["./grafana/provisioning"] == "/etc/grafana/provisioning"


# --- Kubernetes -----------------------------------------------------------------------------


def workers() -> dict[str, dict[str, Any]]:
    """role -> worker Deployment."""
    found = {}
    for obj in k8s_kind("Deployment"):
        args = obj["spec"]["template"]["spec"]["containers"][0]["args"]
        if args[1] == "worker":
            found[role_of(args)] = obj
    return found


def test_k8s_files_are_all_in_the_kustomization() -> None:
    listed = set(kustomization()["resources"])
    assert all((K8S / name).exists() for name in listed)
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert on_disk == listed
    for generator in kustomization()["configMapGenerator"]:
        assert all((K8S / f).exists() for f in generator["envs"])


def test_k8s_runs_a_deployment_per_role_with_args_the_cli_accepts() -> None:
    assert sorted(workers()) == sorted(ROLES)
    commands = set()
    for obj, _, container in pod_containers():
        assert "command" not in container, f"{obj['metadata']['name']}: `command` would replace tini and the entrypoint"
        commands.add(role_of(container["args"]))
    assert {"api", "migrate"} <= commands


def test_k8s_containers_get_their_settings_from_the_secret_and_config_map() -> None:
    secret_keys = set(k8s_kind("Secret")[0]["stringData"])
    config = env_file(K8S / "switchboard.env")
    generated = {g["name"] for g in kustomization()["configMapGenerator"]}
    for obj, _, container in pod_containers():
        name, env = obj["metadata"]["name"], container_env(container)
        for var in env.values():
            if "valueFrom" in var:
                ref = var["valueFrom"]["secretKeyRef"]
                assert ref["key"] in secret_keys, f"{name}: Secret has no key {ref['key']}"
        assert {ref["configMapRef"]["name"] for ref in container["envFrom"]} <= generated, name
        needed = {"SWITCHBOARD_DATABASE_URL"}
        if obj["kind"] == "Deployment":
            # Agents merge turns and queue deliveries too: all of them need the sources.
            needed |= {"SWITCHBOARD_BROKER_URL", "SWITCHBOARD_SOURCES"}
        assert needed <= env.keys(), f"{name} lacks {needed - env.keys()}"
    assert config["SWITCHBOARD_METRICS_HOST"] == "0.0.0.0"


def test_k8s_api_probes_and_ports_match_the_api() -> None:
    from orchestrator.api import create_app

    routes = {getattr(r, "path", None) for r in create_app(Settings()).routes}
    (api,) = [o for o in k8s_kind("Deployment") if o["spec"]["template"]["spec"]["containers"][0]["args"][1] == "api"]
    container = api["spec"]["template"]["spec"]["containers"][0]
    port = build_parser().parse_args(container["args"][1:]).port
    assert container["ports"] == [{"name": "http", "containerPort": port}]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz" in routes
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz" in routes
    (service,) = k8s_kind("Service")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["selector"].items() <= api["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_workers_serve_metrics_on_the_declared_port_and_shut_down_warm() -> None:
    for role, obj in workers().items():
        pod = obj["spec"]["template"]["spec"]
        container = pod["containers"][0]
        port = int(container_env(container)["SWITCHBOARD_METRICS_PORT"]["value"])
        assert container["ports"] == [{"name": "metrics", "containerPort": port}], role
        assert pod["terminationGracePeriodSeconds"] >= 2 * warm_shutdown_s(), role
        assert obj["metadata"]["labels"]["app.kubernetes.io/component"] == role


def test_keda_scales_every_worker_on_exactly_the_queues_it_consumes() -> None:
    auths = {a["metadata"]["name"] for a in k8s_kind("TriggerAuthentication")}
    config = env_file(K8S / "switchboard.env")
    scaled = {}
    for obj in k8s_kind("ScaledObject"):
        target = obj["spec"]["scaleTargetRef"]["name"]
        (role,) = [r for r, d in workers().items() if d["metadata"]["name"] == target]
        triggers = obj["spec"]["triggers"]
        assert all(t["type"] == "redis" and t["authenticationRef"]["name"] in auths for t in triggers)
        assert all(t["metadata"]["addressFromEnv"] in config for t in triggers)
        assert sorted(t["metadata"]["listName"] for t in triggers) == sorted(worker_queues(role)), role
        # Never zero: a cold start takes longer than the agents' deadline, and the
        # orchestrator's processes run the deadline clock and the sweeper.
        assert obj["spec"]["minReplicaCount"] >= 1, role
        assert "replicas" not in workers()[role]["spec"], f"{role}: the ScaledObject owns the replica count"
        scaled[role] = obj
    assert sorted(scaled) == sorted(ROLES)


def test_every_deployment_has_a_disruption_budget_selecting_its_pods() -> None:
    budgets = k8s_kind("PodDisruptionBudget")
    for obj in k8s_kind("Deployment"):
        labels = obj["spec"]["template"]["metadata"]["labels"].items()
        assert any(b["spec"]["selector"]["matchLabels"].items() <= labels for b in budgets), obj["metadata"]["name"]


def test_k8s_pods_run_as_non_root_with_a_writable_metrics_dir() -> None:
    multiproc = dockerfile_env()["PROMETHEUS_MULTIPROC_DIR"]
    images = {i["name"] for i in kustomization()["images"]}
    for obj, pod, container in pod_containers():
        name = obj["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, name
        assert container["image"] in images, name
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert any(multiproc.startswith(m.rstrip("/") + "/") for m in mounts), f"{name}: {multiproc} is read-only"


def test_kubernetes_scrape_config_keeps_the_ports_the_pods_declare() -> None:
    (job,) = load_yaml(DEPLOY / "prometheus" / "kubernetes-scrape.yml")["scrape_configs"]
    keep = {r["source_labels"][0]: r["regex"] for r in job["relabel_configs"] if r.get("action") == "keep"}
    port_names = keep["__meta_kubernetes_pod_container_port_name"]
    for obj in k8s_kind("Deployment"):
        labels = obj["spec"]["template"]["metadata"]["labels"]
        assert re.fullmatch(
            keep["__meta_kubernetes_pod_label_app_kubernetes_io_part_of"], labels["app.kubernetes.io/part-of"]
        )
        (port,) = obj["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert re.fullmatch(port_names, port["name"]), obj["metadata"]["name"]


# --- image ------------------------------------------------------------------------------------


@cache
def dockerfile() -> list[str]:
    """Instructions of the runtime stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return lines


def dockerfile_env() -> dict[str, str]:
    env = {}
    for line in dockerfile():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def instruction(name: str) -> str:
    return [line for line in dockerfile() if line.startswith(name + " ")][-1][len(name) + 1 :]


def test_image_defaults_to_the_api_as_a_non_root_user() -> None:
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in dockerfile()
    cmd = json.loads(instruction("CMD"))
    assert cmd == ["switchboard", "api", "--host", "0.0.0.0"]
    assert build_parser().parse_args(cmd[1:]).command == "api"
    user = instruction("USER").split(":")[0]
    assert user not in {"root", "0"}
    assert "/healthz" in instruction("HEALTHCHECK")
    assert dockerfile_env()["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")


def test_image_copies_every_package_the_project_installs() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = {line.split()[1] for line in dockerfile() if line.startswith("COPY ") and "--from" not in line}
    assert packages <= copied
    assert {"pyproject.toml", project["project"]["readme"]} <= {
        word for line in dockerfile() if line.startswith("COPY ") for word in line.split()
    }
    assert any(line.endswith("pip install .") for line in dockerfile())


def test_entrypoint_empties_the_metrics_dir_and_runs_the_command(tmp_path: Path) -> None:
    stale = tmp_path / "metrics" / "counter_1.db"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    done = subprocess.run(
        ["sh", str(DEPLOY / "docker-entrypoint.sh"), "sh", "-c", 'ls -A "$PROMETHEUS_MULTIPROC_DIR"; echo ran'],
        env={"PATH": os.environ["PATH"], "PROMETHEUS_MULTIPROC_DIR": str(stale.parent)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["ran"]


# --- dashboard ----------------------------------------------------------------------------------


def test_dashboard_panels_are_well_formed() -> None:
    panels = dashboard()["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"]), panel["title"]
    assert dashboard()["uid"]
    provisioned = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    assert provisioned[0]["type"] == "prometheus"


def test_compose_has_no_default_password_binds_the_api_to_loopback_and_runs_in_production() -> None:
    raw = (DEPLOY / "compose.yaml").read_text()
    for variable in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "GRAFANA_ADMIN_PASSWORD"):
        assert f"${{{variable}:?" in raw and f"${{{variable}:-" not in raw, variable  # unset: compose refuses
    assert all(value == "" for key, value in env_file(DEPLOY / ".env.example").items() if key.endswith("PASSWORD"))
    services = compose()["services"]
    assert services["api"]["ports"] == ["${API_BIND:-127.0.0.1}:${API_PORT:-8000}:8000"]
    assert "--requirepass" in services["redis"]["command"] and "ports" not in services["redis"]
    for name, service in switchboard_services().items():
        env = service_env(service)
        assert env["SWITCHBOARD_ENVIRONMENT"] == "production", name
        assert "@redis:" in env.get("SWITCHBOARD_BROKER_URL", "@redis:") and ":${REDIS_PASSWORD" in raw
    assert env_file(K8S / "switchboard.env")["SWITCHBOARD_ENVIRONMENT"] == "production"


def test_the_namespace_denies_ingress_but_to_the_api_and_metrics() -> None:
    policies = {p["metadata"]["name"]: p for p in k8s_kind("NetworkPolicy")}
    deny = policies["switchboard-default-deny"]["spec"]
    assert deny["podSelector"] == {} and deny["policyTypes"] == ["Ingress"] and "ingress" not in deny
    api = policies["switchboard-api"]["spec"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert [p["port"] for rule in api["ingress"] for p in rule["ports"]] == [8000]
