"""A loopback stand-in for the Cloud Run Admin API v2, REST, for the calls the cloudrun target
makes: services get/patch, revisions get/list/delete, operations get.

The control plane is JSON over HTTP on 127.0.0.1, shaped as the real API answers (the real
``google-cloud-run`` client parses it). The data plane is real: each revision the fake creates
runs as a local process (the command its image maps to, with ``PORT`` set), its tag URI is that
process's loopback URL, and the service URI is a small TCP router that spreads NEW connections
over the revisions by their traffic percentages (open connections stay where they are, as on
Cloud Run). Deleting a revision sends SIGTERM to its process, then SIGKILL after 10 s.

What it implements of the API's behaviour: long-running operations (done after ``op_delay``
seconds, or once the new revision is ready or failed), revision readiness and failure
conditions (a process that exits before it listens, an image it does not know, a secret it does
not hold), tags and tag URIs, traffic percentages, and 403/404/409/429 errors (injected with
:meth:`FakeCloudRun.fail`, or the real ones: an unknown service is 404, an update while another
runs is 409).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from safeship import procs

__all__ = ["FakeCloudRun"]

LATEST, REVISION = 1, 2
_TYPES = {
    "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST": LATEST,
    "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION": REVISION,
}
_STATUS = {400: "FAILED_PRECONDITION", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
           409: "ABORTED", 429: "RESOURCE_EXHAUSTED"}  # fmt: skip
_SERVICE_TYPE = "type.googleapis.com/google.cloud.run.v2.Service"
_REVISION_TYPE = "type.googleapis.com/google.cloud.run.v2.Revision"
KILL_AFTER = 10.0  # Cloud Run's grace between SIGTERM and SIGKILL


class ApiError(Exception):
    def __init__(self, code: int, message: str, status: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status or _STATUS.get(code, "")


@dataclass
class _Revision:
    name: str  # short name, svc-rN
    service: str  # full service resource name
    template: dict[str, Any]
    created: float
    port: int | None = None
    process: procs.ProcessRef | None = None
    log: Path | None = None
    state: str = "CONDITION_RECONCILING"
    reason: tuple[str, str] | None = None  # ("reason" | "revisionReason", value)
    message: str = ""

    def as_json(self) -> dict[str, Any]:
        condition: dict[str, Any] = {"type": "Ready", "state": self.state, "message": self.message}
        if self.reason:
            condition[self.reason[0]] = self.reason[1]
        data = {
            "name": f"{self.service}/revisions/{self.name}",
            "service": self.service,
            "createTime": _rfc3339(self.created),
            "containers": self.template.get("containers", []),
            "conditions": [condition],
            "reconciling": self.state == "CONDITION_RECONCILING",
        }
        if self.log is not None:
            data["logUri"] = self.log.as_uri()
        return data

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}" if self.port else ""


@dataclass
class _Service:
    name: str
    template: dict[str, Any]
    traffic: list[dict[str, Any]]
    router_port: int
    latest_ready: str | None = None
    latest_created: str | None = None
    busy: bool = False
    generation: int = 1


@dataclass
class _Operation:
    name: str
    kind: str  # "service" or "revision"
    done: bool = False
    error: tuple[int, str] | None = None
    result: dict[str, Any] = field(default_factory=dict)


class FakeCloudRun:
    """The fake API and its revisions' processes; use as a context manager.

    Args:
        workdir: where revision logs go.
        images: image name -> argv run for it; ``{port}`` is replaced (``PORT`` is also set).
        op_delay: the least time an operation takes, as the real control plane does.
        environ: the base environment of every revision process.
    """

    def __init__(
        self,
        workdir: Path,
        images: Mapping[str, Sequence[str]],
        *,
        project: str = "proj",
        region: str = "europe-west1",
        op_delay: float = 0.0,
        start_timeout: float = 30.0,
        environ: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.workdir, self.images = Path(workdir), dict(images)
        self.project, self.region = project, region
        self.op_delay, self.start_timeout = op_delay, start_timeout
        self.environ = dict(os.environ if environ is None else environ)
        self.cwd = cwd
        self.secrets: dict[str, str] = {}
        """Secret Manager, as revisions see it: secret id -> value of its latest version."""
        self.requests: list[str] = []
        self.services: dict[str, _Service] = {}
        self.revisions: dict[str, _Revision] = {}
        self._ops: dict[str, _Operation] = {}
        self._errors: dict[str, list[int]] = {}
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._routers: dict[str, _Router] = {}
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    # -- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> FakeCloudRun:
        self._loop_thread.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        for revision in list(self.revisions.values()):
            _terminate(revision, kill_after=0.0)
        for router in self._routers.values():
            asyncio.run_coroutine_threadsafe(router.close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(5)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def parent(self, region: str | None = None) -> str:
        return f"projects/{self.project}/locations/{region or self.region}"

    def add_service(self, service_id: str, image: str, env: Sequence[dict[str, Any]] = ()) -> str:
        """A service whose first revision (``<id>-r0``) serves 100 %, once it is ready."""
        name = f"{self.parent()}/services/{service_id}"
        router = _Router()
        asyncio.run_coroutine_threadsafe(router.start(), self._loop).result(5)
        self._routers[name] = router
        template = {
            "revision": f"{service_id}-r0",
            "containers": [{"image": image, "env": list(env)}],
        }
        latest = [{"type": LATEST, "percent": 100}]
        service = _Service(name, template, latest, router.port)
        self.services[name] = service
        revision = self._create_revision(service, template)
        if revision.state != "CONDITION_SUCCEEDED":
            raise RuntimeError(f"the first revision did not start: {revision.message}")
        service.latest_ready = service.latest_created = revision.name
        self._route(service)
        return name

    def fail(self, call: str, *statuses: int) -> None:
        """Answer the next calls of ``call`` (``get_service``, ``update_service``,
        ``get_revision``, ``list_revisions``, ``delete_revision``) with these HTTP errors."""
        self._errors.setdefault(call, []).extend(statuses)

    def service_url(self, service_id: str) -> str:
        return f"http://127.0.0.1:{self.services[f'{self.parent()}/services/{service_id}'].router_port}"

    def revision(self, short_name: str) -> _Revision:
        return self.revisions[short_name]

    # -- the API --------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        self.requests.append(f"{method} {path}")
        try:
            with self._lock:
                return 200, self._dispatch(method, path.removeprefix("/v2/"), body)
        except ApiError as exc:
            return exc.code, {
                "error": {"code": exc.code, "message": exc.message, "status": exc.status}
            }

    def _dispatch(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        parts = path.split("/")
        if "/operations/" in path and method == "GET":
            op = self._ops.get(path)
            if op is None:
                raise ApiError(404, f"Operation {path} not found")
            return self._op_json(op)
        call = {
            ("GET", 6): "get_service", ("PATCH", 6): "update_service",
            ("GET", 7): "list_revisions", ("GET", 8): "get_revision",
            ("DELETE", 8): "delete_revision",
        }.get((method, len(parts)))  # fmt: skip
        if call is None or parts[4] != "services":
            raise ApiError(404, f"no such method: {method} /v2/{path}")
        if self._errors.get(call):
            code = self._errors[call].pop(0)
            raise ApiError(code, _ERROR_TEXT.get(code, "error").format(path=path))
        service = self.services.get("/".join(parts[:6]))
        if service is None:
            raise ApiError(
                404,
                f"Resource '{parts[5]}' of kind 'SERVICE' in region '{parts[3]}' in project '{parts[1]}' does not exist.",
            )
        if call == "get_service":
            return self._service_json(service)
        if call == "update_service":
            return self._update(service, body)
        if call == "list_revisions":
            mine = [r.as_json() for r in self.revisions.values() if r.service == service.name]
            return {"revisions": sorted(mine, key=lambda r: r["createTime"], reverse=True)}
        revision = self.revisions.get(parts[7])
        if revision is None or revision.service != service.name:
            raise ApiError(404, f"Revision '{parts[7]}' does not exist.")
        if call == "get_revision":
            return revision.as_json()
        return self._delete(service, revision)

    def _update(self, service: _Service, body: dict[str, Any]) -> dict[str, Any]:
        if service.busy:
            raise ApiError(
                409, f"Conflict for resource '{service.name}': an operation is in progress."
            )
        template = body.get("template") or service.template
        name = (
            template.get("revision")
            or f"{service.name.rsplit('/', 1)[1]}-{next(self._ids):05d}-auto"
        )
        traffic = [
            dict(t, type=_TYPES.get(str(t.get("type")), t.get("type")))
            for t in body.get("traffic") or service.traffic
        ]
        new = name not in self.revisions
        if new and not name.startswith(service.name.rsplit("/", 1)[1] + "-"):
            raise ApiError(
                400,
                f"Revision name '{name}' must be prefixed by the service name.",
                "INVALID_ARGUMENT",
            )
        if sum(int(t.get("percent", 0)) for t in traffic) != 100:
            raise ApiError(400, "Traffic percentages must add up to 100.", "INVALID_ARGUMENT")
        for t in traffic:
            target = t.get("revision")
            if t["type"] == REVISION and target != name and target not in self.revisions:
                raise ApiError(
                    400, f"Revision '{target}' referenced in traffic not found.", "INVALID_ARGUMENT"
                )
        tags = [t["tag"] for t in traffic if t.get("tag")]
        if len(tags) != len(set(tags)):
            raise ApiError(400, "Traffic tags must be unique.", "INVALID_ARGUMENT")
        op = self._operation("service")
        service.busy = True
        started = time.monotonic()

        def work() -> None:
            revision = self._create_revision(service, template) if new else None
            time.sleep(max(0.0, started + self.op_delay - time.monotonic()))
            with self._lock:
                service.busy = False
                if revision is not None:
                    service.latest_created = revision.name
                    if revision.state != "CONDITION_SUCCEEDED":
                        op.error = (
                            9,
                            f"Revision '{revision.name}' is not ready and cannot serve traffic. {revision.message}",
                        )
                        op.done = True
                        return
                    service.latest_ready = revision.name
                service.template, service.traffic = template, traffic
                service.generation += 1
                self._route(service)
                op.result = self._service_json(service)
                op.done = True

        threading.Thread(target=work, daemon=True).start()
        return self._op_json(op)

    def _delete(self, service: _Service, revision: _Revision) -> dict[str, Any]:
        if service.busy:
            raise ApiError(
                409, f"Conflict for resource '{service.name}': an operation is in progress."
            )
        for status in self._statuses(service):
            if status.get("revision") == revision.name and (
                status.get("percent") or status.get("tag")
            ):
                raise ApiError(
                    400,
                    f"Revision '{revision.name}' is receiving traffic or has a tag and cannot be deleted.",
                )
        op = self._operation("revision")
        del self.revisions[revision.name]
        op.result, op.done = revision.as_json(), True
        threading.Thread(target=_terminate, args=(revision,), daemon=True).start()
        return self._op_json(op)

    # -- revisions ------------------------------------------------------------------------

    def _create_revision(self, service: _Service, template: dict[str, Any]) -> _Revision:
        name = (
            template.get("revision")
            or f"{service.name.rsplit('/', 1)[1]}-{next(self._ids):05d}-auto"
        )
        with self._lock:
            revision = _Revision(name, service.name, template, time.time())
            self.revisions[name] = revision
        container = (template.get("containers") or [{}])[0]
        image = container.get("image", "")
        argv = self.images.get(image)
        if argv is None:
            revision.state, revision.reason = "CONDITION_FAILED", ("reason", "CONTAINER_MISSING")
            revision.message = f"Image '{image}' not found."
            return revision
        env = dict(self.environ)
        for var in container.get("env", []):
            ref = (var.get("valueSource") or {}).get("secretKeyRef")
            if ref is None:
                env[var["name"]] = var.get("value", "")
                continue
            secret = ref["secret"].rsplit("/", 1)[-1]
            if secret not in self.secrets:
                revision.state, revision.reason = (
                    "CONDITION_FAILED",
                    ("reason", "SECRETS_ACCESS_CHECK_FAILED"),
                )
                revision.message = f"Secret projects/{self.project}/secrets/{secret}/versions/{ref.get('version', 'latest')} was not found"
                return revision
            env[var["name"]] = self.secrets[secret]
        port = procs.free_port()
        env.update(PORT=str(port), K_SERVICE=service.name.rsplit("/", 1)[1], K_REVISION=name)
        revision.log, revision.port = self.workdir / f"{name}.log", port
        revision.process = procs.spawn(
            [part.replace("{port}", str(port)) for part in argv],
            log_path=revision.log,
            env=env,
            cwd=self.cwd,
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if not procs.is_alive(revision.process):
                revision.state, revision.reason = (
                    "CONDITION_FAILED",
                    ("revisionReason", "HEALTH_CHECK_CONTAINER_ERROR"),
                )
                revision.message = (
                    "The user-provided container failed to start and listen on the port defined "
                    f"provided by the PORT={port} environment variable. Logs for this revision "
                    f"might contain more information. Logs URL: {revision.log.as_uri()}"
                )
                return revision
            if procs.port_open("127.0.0.1", port, 0.2):
                revision.state = "CONDITION_SUCCEEDED"
                return revision
            time.sleep(0.02)
        _terminate(revision, kill_after=0.0)
        revision.state, revision.reason = (
            "CONDITION_FAILED",
            ("reason", "PROGRESS_DEADLINE_EXCEEDED"),
        )
        revision.message = (
            f"The container did not listen on PORT={port} within {self.start_timeout:g} s."
        )
        return revision

    # -- traffic --------------------------------------------------------------------------

    def _statuses(self, service: _Service) -> list[dict[str, Any]]:
        out = []
        for t in service.traffic:
            name = service.latest_ready if t["type"] == LATEST else t.get("revision")
            status = {"type": t["type"], "revision": name, "percent": int(t.get("percent", 0))}
            if t.get("tag"):
                revision = self.revisions.get(name or "")
                status.update(tag=t["tag"], uri=revision.url if revision else "")
            out.append(status)
        return out

    def _route(self, service: _Service) -> None:
        weights = []
        for status in self._statuses(service):
            revision = self.revisions.get(status["revision"] or "")
            if status["percent"] and revision is not None and revision.port:
                weights.append((revision.port, status["percent"]))
        self._routers[service.name].weights = weights

    # -- JSON -----------------------------------------------------------------------------

    def _service_json(self, service: _Service) -> dict[str, Any]:
        full = f"{service.name}/revisions/"
        return {
            "name": service.name,
            "uri": f"http://127.0.0.1:{service.router_port}",
            "generation": str(service.generation),
            "template": service.template,
            "traffic": service.traffic,
            "trafficStatuses": self._statuses(service),
            "latestReadyRevision": full + service.latest_ready if service.latest_ready else "",
            "latestCreatedRevision": full + service.latest_created
            if service.latest_created
            else "",
            "reconciling": service.busy,
        }

    def _operation(self, kind: str) -> _Operation:
        op = _Operation(f"{self.parent()}/operations/op-{next(self._ids)}", kind)
        self._ops[op.name] = op
        return op

    def _op_json(self, op: _Operation) -> dict[str, Any]:
        kind = _SERVICE_TYPE if op.kind == "service" else _REVISION_TYPE
        data: dict[str, Any] = {"name": op.name, "done": op.done}
        if op.error is not None:
            data["error"] = {"code": op.error[0], "message": op.error[1]}
        elif op.done:
            data["response"] = {"@type": kind, **op.result}
        return data

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                status, answer = fake.handle(method, urlsplit(self.path).path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


_ERROR_TEXT = {
    403: "Permission 'run.services.update' denied on resource '{path}' (or it may not exist).",
    404: "Resource '{path}' does not exist.",
    409: "Conflict for resource '{path}': version '3' was specified but current version is '4'.",
    429: "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per region'.",
    400: "Precondition failed for '{path}'.",
}


def _terminate(revision: _Revision, kill_after: float = KILL_AFTER) -> None:
    """SIGTERM to the revision's process group, SIGKILL after ``kill_after`` s (Cloud Run's 10 s
    when it retires an instance)."""
    # Synchronous, as its callers are threads and close(), which may run inside an event loop.
    ref = revision.process
    if ref is None:
        return
    for sig, wait in ((signal.SIGTERM, kill_after or 0.5), (signal.SIGKILL, 5.0)):
        if not procs.is_alive(ref):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(ref.pid, sig)
        deadline = time.monotonic() + wait
        while procs.is_alive(ref) and time.monotonic() < deadline:
            time.sleep(0.02)


def _rfc3339(seconds: float) -> str:
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1e6):06d}Z"


class _Router:
    """The service URL: new connections go to the revisions by percentage (smooth weighted
    round robin, so the split is exact over any 100 connections); bytes are spliced as they
    are, so WebSockets pass untouched. No revision: the connection is closed."""

    def __init__(self) -> None:
        self.weights: list[tuple[int, int]] = []
        self.port = 0
        self._current: dict[int, int] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    def pick(self) -> int | None:
        weights = list(self.weights)
        if not weights:
            return None
        total = sum(w for _, w in weights)
        for port, weight in weights:
            self._current[port] = self._current.get(port, 0) + weight
        best = max(weights, key=lambda pw: self._current[pw[0]])[0]
        self._current[best] -= total
        return best

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        port = self.pick()
        try:
            if port is None:
                raise OSError("no revision receives traffic")
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", port), 5
            )
        except (OSError, TimeoutError):
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._tasks.discard(task)
            for w in (writer, up_writer):
                w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.write_eof()


@contextlib.contextmanager
def running(
    workdir: Path, images: Mapping[str, Sequence[str]], **options: Any
) -> Iterator[FakeCloudRun]:
    with FakeCloudRun(workdir, images, **options) as fake:
        yield fake
