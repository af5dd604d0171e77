"""The demo's project: a copy of the reference backend with its own manifest, secrets files
and state, and the edits that turn it into revisions r2 to r6.

Everything lives under ``.safeship/demo/project`` of the current directory and is rebuilt on
every run. The backend's secret (``deploy/staging.env``) and the test clients' secret
(``tests/e2e/staging.env``) are generated here, never committed.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Manifest, load_manifest
from ..errors import UsageError

__all__ = ["Workspace", "find_examples"]

LEGACY_OLD = "agent_service.db.DatabaseSessionManager"
LEGACY_NEW = "agent_service.db.SessionManager"
_BROKEN_MODULE = "examples/agent_service/agents/history.py"
_BROKEN_IMPORT = "from agent_service.db import DatabaseSessionManager\n"
_MAIN = "examples/agent_service/main.py"
# r3's change: the service binds before it is ready ("the load balancer wants a port at once")
# and its cache phase waits for a warm-up signal that nothing sends, under a timeout raised "to
# be safe". It listens, answers /health/live, and never becomes ready: the handshake-timeout
# failure of the incident, where a load balancer sent clients to it anyway.
_HANG_EDITS = (
    (
        "ship = Safeship(\n    manifest=_manifest,\n",
        "ship = Safeship(\n    manifest=_manifest,\n    background=True,  # r3: bind at once\n",
    ),
    (
        '@ship.phase("cache", timeout=timeouts["cache"])\nasync def connect_cache() -> None:\n'
        '    await _fault("cache")\n',
        "_cache_warmed = asyncio.Event()  # r3: set by a warm-up job that was never deployed\n\n\n"
        '@ship.phase("cache", timeout=600)  # r3: "warming the cache can take a while"\n'
        "async def connect_cache() -> None:\n"
        '    await _fault("cache")\n'
        "    await _cache_warmed.wait()\n",
    ),
)
_R5_MODULE = "examples/agent_service/connection.py"
_R5_ANCHOR = "        services.hub.add(self)\n"
# r5's change: greet every connection with the user's saved preferences, read through a
# cache whose pooled connections are never given back. Verification (a handful of probes)
# passes; a few seconds into real traffic the pool runs dry, and every connection then fails
# right after it is accepted (1011).
_R5_PATCH = """        services.hub.add(self)
        _preferences.lookup(self.user)  # r5: greet with the user's saved preferences
"""
_R5_HELPER = '''

class _PreferenceCache:
    """r5: user preferences behind a pooled cache client. Bug: a connection taken from the
    pool is never given back, so the pool runs dry after ``size`` WebSocket connections."""

    def __init__(self, size: int = 20) -> None:
        self.size, self.checked_out = size, 0

    def lookup(self, user: str) -> dict[str, str]:
        if self.checked_out >= self.size:
            raise RuntimeError(
                f"QueuePool limit of size {self.size} overflow 0 reached, connection timed out"
            )
        self.checked_out += 1
        return {"user": user, "theme": "dark"}


_preferences = _PreferenceCache()
'''

_MANIFEST = """\
# The demo's manifest: the reference backend, deployed to staging on the local target.
[service]
name = "agent-service"
app = "agent_service.main:app"
app_dir = "examples"
code = "examples/agent_service"
ws_path = "/ws"

[environments.staging]
critical = true
env_file = "deploy/staging.env"          # the backend's configuration, secret included

[secrets.JWT_SECRET]
per_environment = true
min_bytes = 32
consumers = ["env", "file:tests/e2e/staging.env"]   # backend and test clients must agree

[legacy]
"{legacy_old}" = "{legacy_new}"

[gates.boot]
send = '{{"type": "ping", "request_id": "boot-check"}}'
expect = {{ type = "pong", request_id = "boot-check" }}

[deploy]
port = {port}
ready_timeout = 10                       # r3 hangs: verification gives up after this
verify_probes = 5
verify_interval = 0.2
watch_seconds = {watch}
watch_interval = 0.5
failure_threshold = 3
drain_seconds = {drain}
stop_grace_seconds = 8
probe_timeout = 3
probe_secret = "file:tests/e2e/staging.env"   # probes sign like the clients do
probe_send = '{{"type": "ping"}}'
probe_expect = {{ type = "pong" }}
"""


def find_examples() -> Path:
    """The reference backend's directory in this checkout.

    Raises:
        UsageError: safeship is installed without its examples (not from a checkout).
    """
    # An editable install runs from the checkout, so the examples sit beside ``src/``; a wheel
    # does not ship them (they are a FastAPI app, not part of the library).
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "examples" / "agent_service"
        if (candidate / "main.py").is_file():
            return candidate.parent
    raise UsageError(
        "the demo deploys the reference backend, examples/agent_service, which is not "
        "part of this installation",
        hint="clone the safeship repository and run `make demo` in it (the demo needs the "
        "checkout's examples/ and an editable install)",
    )


@dataclass
class Workspace:
    root: Path
    port: int
    backend_secret: str = field(repr=False)
    client_secret: str = field(repr=False)
    _saved: dict[Path, str] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, root: Path, *, port: int, watch: float = 8.0, drain: float = 3.0) -> Workspace:
        examples = find_examples()
        if root.exists():
            shutil.rmtree(root)
        target = root / "examples" / "agent_service"
        shutil.copytree(
            examples / "agent_service",
            target,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        (root / "safeship.toml").write_text(
            _MANIFEST.format(
                port=port, watch=watch, drain=drain, legacy_old=LEGACY_OLD, legacy_new=LEGACY_NEW
            )
        )
        secret = secrets.token_urlsafe(48)
        workspace = cls(root, port, secret, secret)
        workspace._write_env("deploy/staging.env", secret, backend=True)
        workspace._write_env("tests/e2e/staging.env", secret, backend=False)
        return workspace

    def manifest(self) -> Manifest:
        return load_manifest(self.root / "safeship.toml")

    @property
    def examples(self) -> Path:
        return self.root / "examples"

    def _write_env(self, relative: str, secret: str, *, backend: bool) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [f"JWT_SECRET_STAGING={secret}"]
        if backend:
            lines += [
                f"DATABASE_URL=sqlite+aiosqlite:///{self.root / '.safeship' / 'agent_service.db'}",
                "AGENT_SERVICE_RUN_GRACE=4",
            ]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    # -- revisions ---------------------------------------------------------------------------

    def _edit(self, relative: str, old: str, new: str) -> Path:
        path = self.root / relative
        text = path.read_text()
        if old not in text:
            raise RuntimeError(f"demo edit: {relative} no longer contains {old.strip()!r}")
        self._saved.setdefault(path, text)
        path.write_text(text.replace(old, new, 1))
        return path

    def restore(self) -> None:
        """Undo the edits of the last revision (back to r1's code and secrets)."""
        for path, text in self._saved.items():
            path.write_text(text)
        self._saved.clear()

    def break_import(self) -> tuple[str, int]:
        """r2: the refactor that removed the import but left the name in use."""
        text = (self.root / _BROKEN_MODULE).read_text()
        line = text[: text.index(_BROKEN_IMPORT)].count("\n") + 1
        self._edit(_BROKEN_MODULE, _BROKEN_IMPORT, "")
        return _BROKEN_MODULE, line

    def hang_startup(self) -> str:
        """r3: a revision that listens at once and hangs in its ``cache`` phase; returns the
        phase."""
        for old, new in _HANG_EDITS:
            self._edit(_MAIN, old, new)
        return "cache"

    def rotate_backend_secret(self) -> None:
        """r4: the backend's JWT_SECRET_STAGING changes; the test clients keep theirs."""
        path = self.root / "deploy" / "staging.env"
        self._saved.setdefault(path, path.read_text())
        self.backend_secret = secrets.token_urlsafe(48)
        self._write_env("deploy/staging.env", self.backend_secret, backend=True)

    def add_pool_leak(self) -> None:
        """r5: a change that passes verification and fails a few seconds into traffic."""
        path = self._edit(_R5_MODULE, _R5_ANCHOR, _R5_PATCH)
        path.write_text(path.read_text() + _R5_HELPER)

    def migrate_legacy_name(self) -> list[str]:
        """r6: the good change: every use of the legacy name rewritten (libcst)."""
        from ..gates.legacy.gate import rename_references

        outcome = rename_references(
            self.examples, LEGACY_OLD, LEGACY_NEW, write=True, import_root=self.examples
        )
        return [str(p) for p in outcome.changed]

    def forget_edits(self) -> None:
        """Keep the current code as the new baseline (after r6 is promoted)."""
        self._saved.clear()
