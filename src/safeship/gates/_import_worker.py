"""Fork server of the imports gate. Runs as a script in its own interpreter, stdlib only.

The worker ("root") never imports first-party code. Each module is imported in a child
process forked either from the root, or from a *zygote*: a child that imported one of the
module's dependencies and stayed alive. A zygote holds exactly what a fresh import of that
dependency leaves behind, so forking from it spares the module its dependency's closure
while still starting from a state no unrelated module touched. The parent decides which
dependency (the "spine") each module may start from; anything in doubt starts from the root.

Third-party and standard-library modules are preloaded in the root (those the project
imports at module level, then those children turn out to import), so children share them
copy-on-write. A preload that touches first-party code or starts a thread taints the root:
it says so, and the parent starts a new worker that never preloads that module.

Protocol: the parent sends one JSON config line with the modules and their spines; the
worker answers ``{"ready": ...}``, then one JSON line per module, then ``{"done": true}``.
Children talk to the root over their own ``SOCK_SEQPACKET`` socket (one message per send).
"""

import contextlib
import importlib.util
import json
import os
import select
import signal
import socket
import sys
import time

_STACK_WAIT = 1.0  # how long a hung child gets to write its stack before it is killed
_MAX_ZYGOTES = 64


def _load_child_module():
    """``_import_child.py``, loaded by path: this script's directory is not on ``sys.path``
    (it must not shadow the project's modules), and the package must not be imported."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_import_child.py")
    spec = importlib.util.spec_from_file_location("_safeship_import_child", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_c = _load_child_module()


class _Run:
    """One child: importing, then possibly serving as a zygote."""

    def __init__(self, module, sock, parent, deadline):
        self.module = module
        self.sock = sock
        self.parent = parent  # the zygote _Run that forked it, or None for the root
        self.deadline = deadline
        self.pid = None
        self.result = None
        # While a zygote: spine-children not started yet, children importing now, and
        # children that are zygotes themselves. It retires when all three are zero, so a
        # zygote never exits before its children (nothing is left for init to reap).
        self.unstarted = 0
        self.inflight = 0
        self.kept = 0


class _Root:
    def __init__(self, config, channel, scope, preloader):
        self.channel = channel
        self.scope = scope
        self.preloader = preloader
        self.learn = config.get("learn", True)
        self.timeout = float(config["timeout"])
        self.jobs = max(1, int(config.get("jobs", 1)))
        self.spine = {m["name"]: m.get("spine") for m in config["modules"]}
        self.children: dict[str, list[str]] = {}
        for name, spine in self.spine.items():
            if spine in self.spine:
                self.children.setdefault(spine, []).append(name)
        self.left = set(self.spine)
        self.ready = [n for n in reversed(list(self.spine)) if self.spine[n] not in self.spine]
        self.waiting = {n for n in self.spine if self.spine[n] in self.spine}
        self.zygotes = {}  # module -> _Run serving as a zygote
        self.runs = {}  # socket fileno -> _Run (importing or zygote)
        self.taint = None

    # --- scheduling
    def _base(self, module):
        spine = self.spine.get(module)
        while spine is not None:
            if spine in self.zygotes:
                return self.zygotes[spine]
            spine = self.spine.get(spine)
        return None

    def _importing(self):
        return [r for r in self.runs.values() if r.module not in self.zygotes]

    def _start(self, module):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = bool(self.children.get(module)) and len(self.zygotes) < _MAX_ZYGOTES
        base = self._base(module)
        run = _Run(module, ours, base, time.monotonic() + self.timeout)
        if base is None:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                try:
                    ours.close()
                    os.close(self.channel.fileno())
                    for other in self.runs.values():
                        other.sock.close()
                    _c.child(theirs, module, keep, self.scope)
                finally:
                    os._exit(70)
            run.pid = pid
        else:
            command = json.dumps({"fork": module, "keep": keep}).encode()
            try:
                socket.send_fds(base.sock, [command], [theirs.fileno()])
            except OSError:  # the zygote is gone: start again without it
                theirs.close()
                ours.close()
                self._retire(base)
                self.ready.append(module)
                return
            base.inflight += 1
            if self.spine.get(module) == base.module:
                base.unstarted -= 1
        theirs.close()
        self.runs[ours.fileno()] = run

    def _ended(self, run):
        """Bookkeeping when a child's import is over, whatever its outcome."""
        if run.parent is not None:
            run.parent.inflight -= 1
            self._maybe_retire(run.parent)

    def _release(self, module):
        """A module has its outcome: its spine-children may start."""
        for child in reversed(self.children.get(module, [])):
            if child in self.waiting:
                self.waiting.discard(child)
                self.ready.append(child)

    def _maybe_retire(self, zygote):
        if zygote.module in self.zygotes and not (
            zygote.unstarted or zygote.inflight or zygote.kept
        ):
            self._retire(zygote)

    def _retire(self, zygote):
        if self.zygotes.pop(zygote.module, None) is None:
            return
        self.runs.pop(zygote.sock.fileno(), None)
        with contextlib.suppress(OSError):
            zygote.sock.send(b'{"exit": true}')
        zygote.sock.close()
        if zygote.parent is None and zygote.pid:
            _c.wait(zygote.pid)
        elif zygote.parent is not None:
            zygote.parent.kept -= 1
            self._maybe_retire(zygote.parent)

    # --- outcomes
    def _emit(self, run, result):
        result["module"] = run.module
        learned = result.pop("learn", [])
        self.channel.write(json.dumps(result) + "\n")
        self.left.discard(run.module)
        if self.learn and self.taint is None and learned:
            self.taint = self.preloader.load(learned)
            command = json.dumps({"preload": learned}).encode()
            for zygote in self.zygotes.values():
                with contextlib.suppress(OSError):
                    zygote.sock.send(command)
        self._release(run.module)

    def _finish(self, run, result):
        if result.get("status") == "present":
            # The zygote's dependency had already imported it: redo it from the root.
            self._close(run)
            self._reap(run)
            self._ended(run)
            self.spine[run.module] = None
            self.ready.append(run.module)
            return
        if result.pop("zygote", False):
            run.unstarted = len([c for c in self.children.get(run.module, []) if c in self.waiting])
            self.zygotes[run.module] = run
            if run.parent is not None:
                run.parent.kept += 1
        else:
            self._close(run)
            self._reap(run)
        self._ended(run)
        self._emit(run, result)
        if run.module in self.zygotes:
            self._maybe_retire(run)

    def _close(self, run):
        self.runs.pop(run.sock.fileno(), None)
        run.sock.close()

    def _reap(self, run):
        if run.parent is None and run.pid:
            _c.wait(run.pid)
        elif run.parent is not None and run.pid and run.parent.module in self.zygotes:
            with contextlib.suppress(OSError):
                run.parent.sock.send(json.dumps({"reap": run.pid}).encode())

    def _crashed(self, run):
        self._close(run)
        status = {}
        if run.parent is None and run.pid:
            status = _c.wait(run.pid)
        elif run.parent is not None and run.pid and run.parent.module in self.zygotes:
            status = self._ask_reap(run.parent, run.pid)
        self._ended(run)
        self._emit(run, {"status": "crashed", **status})

    def _ask_reap(self, zygote, pid):
        with contextlib.suppress(OSError):
            zygote.sock.send(json.dumps({"reap": pid}).encode())
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            ready, _, _ = select.select([zygote.sock], [], [], deadline - time.monotonic())
            data = zygote.sock.recv(_c.MSG) if ready else b""
            if not data:
                break
            message = json.loads(data)
            if message.pop("reaped", None) == pid:
                return message
        return {}

    def _hung(self, run):
        stack = []
        if run.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGUSR1)
                wait = _STACK_WAIT
                while True:
                    ready, _, _ = select.select([run.sock], [], [], wait)
                    data = run.sock.recv(_c.MSG) if ready else b""
                    if not data:
                        break
                    stack.append(data.decode("utf-8", "replace"))
                    wait = 0.05
            try:
                os.killpg(run.pid, signal.SIGKILL)  # with everything the import started
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.pid, signal.SIGKILL)
        self._close(run)
        self._reap(run)
        self._ended(run)
        self._emit(run, {"status": "hung", "stack": "".join(stack)[-8000:]})

    def _on_message(self, run, data):
        if not data:
            if run.module in self.zygotes:  # a zygote died: its dependents start elsewhere
                self._retire(run)
            elif run.pid is None:  # its zygote exited before forking it: start it again
                self._close(run)
                self._ended(run)
                self.spine[run.module] = None
                self.ready.append(run.module)
            elif run.result is None:
                self._crashed(run)
            return
        message = json.loads(data)
        if "hello" in message:
            run.pid = message["hello"]
        elif "status" in message and run.result is None:
            run.result = message
            self._finish(run, message)
        # else: a late answer to a reap request; nothing waits for it

    def serve(self):
        while self.left and self.taint is None:
            while self.ready and len(self._importing()) < self.jobs:
                self._start(self.ready.pop())
            importing = self._importing()
            if not importing:
                if self.waiting:  # cannot happen with an acyclic plan; never hang on it
                    for module in sorted(self.waiting):
                        self.spine[module] = None
                        self.ready.append(module)
                    self.waiting.clear()
                    continue
                break
            now = time.monotonic()
            deadline = min(r.deadline for r in importing)
            socks = [r.sock for r in self.runs.values()]
            ready, _, _ = select.select(socks, [], [], max(0.0, deadline - now))
            for sock in ready:
                run = self.runs.get(sock.fileno())
                if run is None:
                    continue
                try:
                    data = sock.recv(_c.MSG)
                except OSError:
                    data = b""
                self._on_message(run, data)
            now = time.monotonic()
            for run in self._importing():
                if run.result is None and now >= run.deadline and run.sock.fileno() in self.runs:
                    # Preloading may have kept this loop busy: an answer may be waiting.
                    pending, _, _ = select.select([run.sock], [], [], 0)
                    if pending:
                        try:
                            data = run.sock.recv(_c.MSG)
                        except OSError:
                            data = b""
                        self._on_message(run, data)
                    if run.result is None and run.sock.fileno() in self.runs:
                        self._hung(run)
        for zygote in reversed(list(self.zygotes.values())):  # children before parents
            self._retire(zygote)
        self.channel.write(json.dumps({"done": True, "taint": self.taint}) + "\n")


def main():
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints from preloaded packages never corrupt the channel
    config = json.loads(sys.stdin.readline())
    root = config["root"]
    sys.path[0] = root  # the script's own directory must not shadow project modules
    scope = _c.Scope(root, config.get("first_party", []))
    preloader = _c.Preloader(scope, config.get("never", []), config.get("preload_timeout", 10.0))
    _c.PRELOADER = preloader
    taint = preloader.load(config.get("preload", []))
    channel.write(json.dumps({"ready": True, "preloaded": preloader.loaded, "taint": taint}) + "\n")
    if taint is None:
        _Root(config, channel, scope, preloader).serve()


if __name__ == "__main__":
    main()
