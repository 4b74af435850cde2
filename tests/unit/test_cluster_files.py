"""cluster/: the launcher YAML, the KubeRay manifest and the Dockerfile parse, have the required parts,
and agree with pyproject.toml on the batchsep version (image tag), Ray, torch and Python."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

import batchsep

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def pin(package: str) -> str:
    """The version pin of ``package`` in pyproject.toml, e.g. ``2.60.*`` for ray."""
    for dep in PYPROJECT["project"]["dependencies"]:
        m = re.fullmatch(rf"{re.escape(package)}(\[[^\]]*\])?==(\S+)", dep.replace(" ", ""))
        if m:
            return m.group(2)
    raise AssertionError(f"{package} is not pinned with == in pyproject.toml")


def matches_pin(version: str, pinned: str) -> bool:
    return (
        version.startswith(pinned.rstrip("*").rstrip(".")) if "*" in pinned else version == pinned
    )


VERSION = PYPROJECT["project"]["version"]
IMAGE = f"batchsep:{VERSION}"


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def test_package_version_is_pyproject_version():
    assert batchsep.__version__ == VERSION


def test_pin_helper_can_fail():
    assert matches_pin("2.60.0", "2.60.*") and not matches_pin("2.61.0", "2.60.*")
    assert not matches_pin("2.6.0", "2.60.*")
    with pytest.raises(AssertionError):
        pin("no-such-package")


def test_cluster_launcher_config():
    cfg = load("ray-cluster.yaml")
    for key in ("cluster_name", "provider", "available_node_types", "head_node_type", "docker"):
        assert key in cfg, key
    types = cfg["available_node_types"]
    assert {"cpu-workers", "gpu-workers", cfg["head_node_type"]} <= set(types)
    for name, node in types.items():
        assert "node_config" in node and "resources" in node, name
        if name != cfg["head_node_type"]:
            assert 0 <= node["min_workers"] <= node["max_workers"] <= cfg["max_workers"], name
    assert cfg["docker"]["image"].split("/")[-1] == IMAGE
    assert any("ray start --head" in c for c in cfg["head_start_ray_commands"])
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in cfg["worker_start_ray_commands"])
    assert any("import batchsep" in c for c in cfg["setup_commands"])
    assert any(o.startswith("--env-file") for o in cfg["docker"]["run_options"])


@pytest.mark.parametrize(
    "name", ["ray-cluster.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml", "Dockerfile"]
)
def test_no_credentials_in_cluster_files(name):
    text = (CLUSTER / name).read_text()
    assert not re.search(r"AWS_(SECRET_ACCESS_KEY|ACCESS_KEY_ID|SESSION_TOKEN)", text)


def test_kuberay_manifest():
    doc = load("kuberay-raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayCluster"
    check_ray_cluster_spec(doc["spec"])


def check_ray_cluster_spec(spec: dict) -> None:
    """A RayCluster's spec (also a RayJob's ``rayClusterSpec``): versions, groups, image, secret."""
    assert matches_pin(spec["rayVersion"], pin("ray"))
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    containers = list(head["template"]["spec"]["containers"])
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        containers += g["template"]["spec"]["containers"]
    for c in containers:
        assert c["image"].split("/")[-1] == IMAGE
        assert {"requests", "limits"} <= set(c["resources"])
        assert {"name": "batchsep-s3"} in [e.get("secretRef") for e in c.get("envFrom", [])]
        assert "env" not in c  # credentials only via the secret
    gpu = groups["gpu-workers"]["template"]["spec"]["containers"][0]["resources"]
    assert gpu["limits"]["nvidia.com/gpu"] == "1"
    assert "8265" in {
        str(p["containerPort"]) for p in head["template"]["spec"]["containers"][0]["ports"]
    }


def dockerfile_args() -> dict[str, str]:
    text = (CLUSTER / "Dockerfile").read_text()
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", text, flags=re.M))


def test_dockerfile_matches_pyproject():
    text = (CLUSTER / "Dockerfile").read_text()
    args = dockerfile_args()
    assert args["BATCHSEP_VERSION"] == VERSION
    assert args["RAY_VERSION"] == pin("ray")
    assert args["TORCH_VERSION"] == pin("torch")
    python = PYPROJECT["project"]["requires-python"].lstrip(">=")
    assert tuple(map(int, args["PYTHON_VERSION"].split("."))) >= tuple(map(int, python.split(".")))
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}", text, flags=re.M)
    assert "pip install ." in text and "COPY batchsep ./batchsep" in text


def test_readme_mentions_every_file():
    readme = (CLUSTER / "README.md").read_text()
    for name in (
        "Dockerfile", "ray-cluster.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob.yaml",
        "AWS_ENDPOINT_URL",
    ):  # fmt: skip
        assert name in readme
    assert f"batchsep:{VERSION}" in readme


def test_kuberay_rayjob_runs_a_real_command_on_a_mounted_spec():
    """The RayJob's entrypoint is ``batchsep run SPEC`` as the CLI parses it, SPEC lies in the ConfigMap
    mounted on the head (where the driver runs), and its cluster is the RayCluster manifest's."""
    import shlex

    from batchsep.cli.main import main

    doc = load("kuberay-rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayJob"
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    check_ray_cluster_spec(spec["rayClusterSpec"])
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["batchsep", "run"]
    main.commands["run"].make_context("run", argv[2:])  # parses: a real command and its options
    spec_path = Path(argv[2])
    head = spec["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    (volume,) = [n for n, path in mounts.items() if Path(path) == spec_path.parent]
    config_map = volumes[volume]["configMap"]["name"]
    text = (CLUSTER / "kuberay-rayjob.yaml").read_text()
    assert f"kubectl create configmap {config_map} --from-file={spec_path.name}=jobs/" in text
    found = re.search(rf"--from-file={spec_path.name}=(\S+)", text)
    assert found is not None
    jobs_spec = found.group(1)
    assert (REPO / jobs_spec).is_file()
