"""The import contracts in pyproject.toml hold, and each one catches the arrow it forbids."""

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_import_contracts_hold():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def copy_of_the_code(tmp_path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "bad_import", "contract"),
    [
        ("fraud/rules.py", "import gifting.models", "Layers"),
        ("vouchers/models.py", "import gifting.models", "Layers"),
        ("vouchers/services.py", "import fraud.services", "Layers"),
        ("core/masking.py", "import gifting.models", "Layers"),
        ("gifting/selectors.py", "import config.settings", "No app or core module imports config"),
        ("gifting/api.py", "import fraud.models", "never its models"),
    ],
)
def test_each_wrong_arrow_breaks_a_contract(copy_of_the_code, module, bad_import, contract):
    path = copy_of_the_code / module
    path.write_text(path.read_text() + f"\n{bad_import}\n")

    result = lint_imports(copy_of_the_code)

    assert result.returncode != 0
    report = " ".join(result.stdout.split())  # lint-imports wraps long contract names
    assert contract in report.split("Broken contracts")[-1]
