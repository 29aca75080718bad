"""The dependency lock files, and the audit that checks them.

requirements.txt is what production installs: the runtime set only, every
package (transitive ones too) pinned with its hashes, compiled by pip-tools
from requirements.in. requirements-dev.txt is the same set plus the test and
development tools. bin/audit-dependencies runs pip-audit on a lock file and
never calls an audit that did not happen clean: it is tried here against a
small OSV stand-in on loopback, answering, vulnerable, and gone.
"""

import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
RUNTIME_LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
# Test, lint and development tools: none may reach production.
DEV_TOOLS = {
    "moto",
    "aiosmtpd",
    "pytest",
    "pytest-django",
    "pytest-env",
    "ruff",
    "import-linter",
    "schemathesis",
    "hypothesis",
    "playwright",
    "honcho",
    "pip-tools",
    "pip-audit",
}
# What web, worker and beat import that is easy to lose: the issue-9 packages, kombu's SQS transport
# (pycurl) and the wallet code's EIP-55 checksums (eth-utils, with eth-hash's keccak backend).
RUNTIME = {
    "django",
    "celery",
    "kombu",
    "gunicorn",
    "psycopg",
    "pycurl",
    "eth-utils",
    "eth-hash",
    "pycryptodome",
    "cryptography",
    "django-rest-knox",
    "whitenoise",
    "drf-spectacular-sidecar",
    "django-otp",
}


def entries(lock_file: Path) -> dict[str, tuple[str, list[str]]]:
    """{name: (version, hashes)} for every requirement in a pip-compile lock file."""
    found: dict[str, tuple[str, list[str]]] = {}
    name = None
    for line in lock_file.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            match = PIN.match(line)
            assert match, f"{lock_file.name}: not pinned with ==: {line!r}"
            name = canonicalize_name(match[1])
            found[name] = (match[2], [])
        found[name][1].extend(re.findall(r"--hash=(sha256:[0-9a-f]{64})", line))
    return found


def declared(in_file: Path) -> set[str]:
    """The names a requirements .in file asks for (without extras, markers or comments)."""
    names = set()
    for line in in_file.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-"):
            names.add(canonicalize_name(re.split(r"[\[=<>~!; ]", line)[0]))
    return names


@pytest.mark.parametrize("lock_file", [RUNTIME_LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_every_pin_has_hashes(lock_file):
    pins = entries(lock_file)
    assert len(pins) > 50  # the transitive dependencies too, not just what the .in file names
    assert {name for name, (_, hashes) in pins.items() if not hashes} == set()


@pytest.mark.parametrize("lock_file", [RUNTIME_LOCK, DEV_LOCK], ids=lambda path: path.name)
def test_lock_files_name_nothing_of_this_machine(lock_file):
    text = lock_file.read_text()
    for local in ("file://", "/opt/", "/etc/", "/tmp/", "/root/", "--find-links", "--index-url", "--extra-index-url"):
        assert local not in text, f"{lock_file.name} mentions {local}"


def test_runtime_lock_holds_the_runtime_set_and_no_dev_tool():
    runtime = set(entries(RUNTIME_LOCK))
    assert runtime & DEV_TOOLS == set()
    assert RUNTIME <= runtime
    assert declared(ROOT / "requirements.in") <= runtime  # compiled from the current .in file


def test_dev_lock_adds_the_tools_to_the_same_runtime_versions():
    runtime, dev = entries(RUNTIME_LOCK), entries(DEV_LOCK)
    assert DEV_TOOLS <= set(dev)
    assert declared(ROOT / "requirements-dev.in") <= set(dev)
    assert {name: version for name, (version, _) in runtime.items()} == {
        name: dev[name][0] for name in runtime if name in dev
    }
    assert set(runtime) <= set(dev)


# --- bin/audit-dependencies -----------------------------------------------------------------------


class FakeOsv(BaseHTTPRequestHandler):
    """OSV's query API: POST {"package": {"name", "ecosystem"}, "version"} → {"vulns": [...]} or {}."""

    vulnerable: dict[str, str] = {}  # package name → advisory id

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = query["package"]["name"]
        body = {}
        if name in self.vulnerable:
            fixed = {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "99.0"}]}
            affected = [{"package": {"name": name, "ecosystem": "PyPI"}, "ranges": [fixed]}]
            body = {"vulns": [{"id": self.vulnerable[name], "summary": "test", "affected": affected}]}
        payload = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def osv():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeOsv)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1/query"
    server.shutdown()
    server.server_close()
    FakeOsv.vulnerable = {}


@pytest.fixture
def small_lock(tmp_path) -> Path:
    """Two entries of the real lock file, hashes and all."""
    blocks = re.findall(r"^(?:django|whitenoise)==.*?(?=^\S)", RUNTIME_LOCK.read_text(), flags=re.M | re.S)
    assert len(blocks) == 2
    lock = tmp_path / "requirements.txt"
    lock.write_text("".join(blocks))
    return lock


@pytest.fixture
def unused_port_url() -> str:
    """An OSV URL on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/query"


def audit(lock: Path, osv_url: str, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "bin" / "audit-dependencies"), str(lock), "--osv-url", osv_url, *extra],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_audit_reports_a_clean_set_only_when_every_package_was_checked(osv, small_lock):
    result = audit(small_lock, osv)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "no known vulnerabilities in the 2 packages" in result.stdout


def test_audit_fails_on_a_known_vulnerability(osv, small_lock):
    FakeOsv.vulnerable = {"whitenoise": "GHSA-test-0001"}

    result = audit(small_lock, osv)

    assert result.returncode == 1
    assert "VULNERABLE whitenoise" in result.stdout and "GHSA-test-0001" in result.stdout
    assert "no known vulnerabilities" not in result.stdout


def test_audit_without_a_reachable_database_says_it_did_not_run(small_lock, unused_port_url):
    result = audit(small_lock, unused_port_url)
    strict = audit(small_lock, unused_port_url, "--require-database")

    assert result.returncode == 0  # CI on a machine with no route to OSV goes on, saying so
    assert "pip-audit did not run" in result.stdout
    assert "not a clean result" in result.stdout
    assert "no known vulnerabilities" not in result.stdout
    assert strict.returncode == 2


def test_audit_with_unchecked_packages_says_it_was_incomplete(osv, small_lock):
    # A URL requirement has no version to look up: pip-audit skips it.
    url_requirement = f"thing @ https://example.invalid/thing-1.0-py3-none-any.whl --hash=sha256:{'0' * 64}\n"
    small_lock.write_text(small_lock.read_text() + url_requirement)

    result = audit(small_lock, osv)

    assert result.returncode == 0
    assert "NOT CHECKED" in result.stdout
    assert "pip-audit was incomplete: 2 of the 3 packages" in result.stdout
    assert "no known vulnerabilities in" not in result.stdout
