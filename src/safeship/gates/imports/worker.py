"""Fork server of the imports gate. Runs as a script in its own interpreter, stdlib only.

The worker ("root") never imports first-party code. Each module is imported in a child
process forked either from the root, or from a *template*: a child that imported one of the
module's dependencies and stayed alive. A template holds exactly what a fresh import of that
dependency leaves behind, so forking from it spares the module its dependency's closure
while still starting from a state no unrelated module touched. The parent decides which
dependency (the "spine") each module may start from; anything in doubt starts from the root.
When a spine's import fails, the modules waiting for it start from the template that spine
was forked from, if their plan allows (``reach``), else from the root.

Ready modules start depth first, and heaviest first among siblings (``weight``: the
longest chain of work that waits for them), see ``_push_all``.

Third-party and standard-library modules are preloaded in the root (those the project
imports at module level, then those children turn out to import), so children share them
copy-on-write. A preload that touches first-party code or starts a thread taints the root:
it says so, and the parent starts a new worker that never preloads that module.

Protocol: the parent sends one JSON config line with the modules and their plan; the
worker answers ``{"ready": ...}``, then one JSON line per module, then ``{"done": true}``.
Children talk to the root over their own ``SOCK_SEQPACKET`` socket (one message per send).
"""

import contextlib
import importlib.util
import json
import os
import re
import select
import signal
import socket
import sys
import time

_STACK_WAIT = 1.0  # how long a hung child gets to write its stack before it is killed
_STATUS_WAIT = 5.0  # how long the exit status of a child that died may take to arrive
_REAP_POLL = 0.02
_MAX_TEMPLATES = 64
STARTUP = "<startup>"  # the run that imports the entry modules (see ``child._startup``)
STARTUP_TIMEOUTS = 3  # the startup's deadline, in per-module timeouts
_FRAME = re.compile(r'^\s*File "(.+)", line (\d+) in (.+)$')


def _load_child_module():
    """``child.py``, loaded by path: this script's directory is not on ``sys.path``
    (it must not shadow the project's modules), and the package must not be imported."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.py")
    spec = importlib.util.spec_from_file_location("_safeship_import_child", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


child = _load_child_module()


class _Forked(BaseException):
    """Raised in a child the root just forked, to unwind to ``main`` before importing: every
    child imports at the same, shallow stack depth (see ``child``)."""

    def __init__(self, task):
        super().__init__()
        self.task = task


class _Run:
    """One child: importing, then possibly serving as a template."""

    def __init__(self, module, sock, base, hops, deadline):
        self.module = module
        self.sock = sock
        self.base = base  # the template _Run it was forked from, or None for the root
        self.hops = hops  # steps up the module's chain of spines to that template
        self.deadline = deadline
        self.pid = None
        self.result = None
        self.died = None  # when its socket closed without a result (waiting for the status)
        self.entry = None  # the startup run: the module it is importing
        self.loaded = []  # the startup run: first-party modules the startup imported
        self.failed = {}  # the startup run: module -> the failure that took it down
        self.hung = None  # the startup run: the module it hung in
        # A module whose process, once it has imported and kept itself, forks this run's
        # child itself, without waiting for the root (see ``_Root._start``).
        self.next = None
        self.counted = True  # whether it counts among the imports in flight
        # While a template: modules that will still start from it (waiting or importing).
        # It exits when none is left.
        self.refs = 0


class _Root:
    def __init__(self, config, channel, scope, preloader):
        self.channel = channel
        self.scope = scope
        self.preloader = preloader
        self.learn = config.get("learn", True)
        self.timeout = float(config["timeout"])
        self.jobs = max(1, int(config.get("jobs", 1)))
        modules = config["modules"]
        self.spine = {m["name"]: m.get("spine") for m in modules}
        self.reach = {m["name"]: int(m.get("reach") or 0) for m in modules}
        self.weight = {m["name"]: int(m.get("weight") or 0) for m in modules}
        # Modules waiting for a module's outcome, to start from its process.
        self.waiting: dict[str, list[str]] = {}
        self.left = set(self.spine)
        self.ready = []  # stack of (module, base run, hops): the top starts next
        # With entries, the app's startup runs first, and the process holding the started
        # app replaces the root as the start of every module not started from a dependency.
        self.entries = list(config.get("entries") or [])
        self.more = list(config.get("more") or [])
        self.tree = config.get("tree") or config["root"]
        self.app = None
        if self.entries:
            self.ready.append((STARTUP, None, 0))
        else:
            self._schedule(set())
        self.templates = {}  # module -> _Run serving as a template
        self.runs = {}  # socket fileno -> _Run (importing, template, or dead awaiting status)
        self.importing = 0
        self.statuses = {}  # pid -> exit status, from our own reaping or a template's report
        self.taint = None
        self.missing = set()  # top-level names of the modules found missing

    # --- scheduling
    def _schedule(self, done):
        """Release every module not in ``done``: those whose spine is still to import wait
        for it, the others start from the app (or the root)."""
        for name, spine in self.spine.items():
            if name in done:
                continue
            if spine in self.spine and spine not in done:
                self.waiting.setdefault(spine, []).append(name)
            else:
                self.spine[name] = None
        self._push_all([(n, None, 0) for n in self.spine if n not in done and not self.spine[n]])

    def _push(self, module, base, hops):
        self.ready.append((module, base, hops))

    def _push_all(self, entries):
        """Depth first, heaviest first: what was released last starts first, which keeps
        few templates alive at once (each waits only for its own subtree), and among modules
        released together the heaviest chain of work goes first, so it does not finish
        last, alone on one core."""
        self.ready.extend(sorted(entries, key=lambda entry: self.weight[entry[0]]))

    def _start(self, module, base, hops):
        if base is None and self.app is not None:
            base = self.app
        if base is not None and self.templates.get(base.module) is not base:
            base, hops = None, 0  # it exited (or died) meanwhile
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        keep = self._keeps(module)
        # The startup imports the whole app: it gets the time of a few modules.
        timeout = self.timeout * (STARTUP_TIMEOUTS if module == STARTUP else 1)
        run = _Run(module, ours, base, hops, time.monotonic() + timeout)
        payload = module
        if module == STARTUP:
            payload = {"entries": self.entries, "more": self.more, "tree": self.tree}
        # Along a chain, the heaviest module waiting for this one is forked by this one's
        # process as soon as it has imported: no round trip through the root per link.
        nxt = self._chain(run) if keep and module != STARTUP else None
        fds = [theirs.fileno()] + ([nxt[1].fileno()] if nxt else [])
        follow = [nxt[0].module, nxt[2]] if nxt else None
        if base is None:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child
                try:
                    ours.close()
                    os.close(self.channel.fileno())
                    for other in self.runs.values():
                        other.sock.close()
                finally:
                    then = (nxt[1], nxt[0].module, nxt[2]) if nxt else None
                    raise _Forked((theirs, payload, keep, self.scope, then))
            run.pid = pid
        else:
            command = json.dumps({"fork": module, "keep": keep, "next": follow}).encode()
            try:
                socket.send_fds(base.sock, [command], fds)
            except OSError:  # the template is gone: start again without it
                theirs.close()
                ours.close()
                if nxt:
                    nxt[1].close()
                    self._cancel_next(run)
                self._template_died(base)
                self._push(module, None, 0)
                return
        theirs.close()
        if nxt:
            nxt[1].close()
        self.runs[ours.fileno()] = run
        self.importing += 1

    def _keeps(self, module):
        return module == STARTUP or (
            bool(self.waiting.get(module)) and len(self.templates) < _MAX_TEMPLATES
        )

    def _chain(self, run):
        """Register the heaviest module waiting for ``run``'s as its process's next child:
        ``(its run, the socket end for its process, whether it keeps)``."""
        waiting = self.waiting.get(run.module)
        if not waiting:
            return None
        module = max(waiting, key=lambda name: self.weight[name])
        waiting.remove(module)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # Its deadline runs from when it really starts: ``run``'s outcome.
        follower = _Run(module, ours, run, 1, run.deadline + self.timeout)
        follower.counted = False
        run.refs += 1
        run.next = follower
        self.runs[ours.fileno()] = follower
        return follower, theirs, self._keeps(module)

    def _prefetch(self, run):
        """While ``run`` imports, ask its process for its own next child already: it finds
        the request once it has imported and kept itself, so a chain runs without waiting
        for the root between links."""
        if run.next is not None or not self._keeps(run.module):
            return
        nxt = self._chain(run)
        if nxt is None:
            return
        follower, theirs, keep = nxt
        command = json.dumps({"fork": follower.module, "keep": keep}).encode()
        try:
            socket.send_fds(run.sock, [command], [theirs.fileno()])
        except OSError:
            self._cancel_next(run)
        finally:
            theirs.close()

    def _cancel_next(self, run):
        """``run``'s process will not fork its next child (it did not keep itself): that
        module waits for ``run``'s outcome again, like the others."""
        follower, run.next = run.next, None
        if follower is None or follower.pid is not None:
            return
        self._close(follower)
        run.refs -= 1
        self.waiting.setdefault(run.module, []).append(follower.module)

    def _release(self, template):
        """One module fewer will start from ``template``: it exits when none is left."""
        if template is None or template is self.app:
            return
        template.refs -= 1
        if template.refs <= 0 and template.module in self.templates:
            self._retire(template)

    def _retire(self, template):
        if self.templates.pop(template.module, None) is None:
            return
        with contextlib.suppress(OSError):
            template.sock.send(b'{"exit": true}')
        # Keep reading its socket until it closes: it may still report exit statuses.

    def _template_died(self, template):
        if self.templates.pop(template.module, None) is not None:
            self._close(template)

    def _place_waiting(self, run, kept):
        """``run``'s module has its outcome: the modules waiting for it may start, from its
        template, or else from the template it was forked from if their plan allows."""
        entries = []
        for module in self.waiting.pop(run.module, []):
            if kept:
                base, hops = run, 1
            elif run.base is not None and self.reach[module] >= run.hops + 1:
                base, hops = run.base, run.hops + 1
            else:
                base, hops = None, 0
            if base is not None:
                base.refs += 1
            entries.append((module, base, hops))
        self._push_all(entries)

    # --- outcomes
    def _emit(self, run, result):
        if run.module == STARTUP:
            self._started(run, result)
            return
        result["module"] = run.module
        if result.get("missing"):
            self.missing.add(str(result["missing"]).split(".")[0])
        learned = result.pop("learn", [])
        self.channel.write(json.dumps(result) + "\n")
        self.left.discard(run.module)
        if self.learn and self.taint is None and learned:
            self.taint = self.preloader.load(learned)
            command = json.dumps({"preload": learned}).encode()
            for template in self.templates.values():
                with contextlib.suppress(OSError):
                    template.sock.send(command)

    def _started(self, run, result):
        """The startup has its outcome: report it, and the modules it imported, which are
        not imported again; release the others, from the app if its process is kept."""
        entry = result.pop("entry", None) or run.entry or self.entries[0]
        kept = bool(result.pop("template", False))
        if kept:
            self.app = run
            self.templates[STARTUP] = run
        loaded = set(run.loaded)
        result.update(startup=True, entry=entry, entries=self.entries, loaded=len(loaded))
        result["module"] = entry
        self.channel.write(json.dumps(result) + "\n")
        done = loaded & self.left
        for module in sorted(done):
            self.channel.write(json.dumps({"module": module, "status": "ok", "startup": True}))
            self.channel.write("\n")
        for module, failure in run.failed.items():
            if failure.get("missing"):
                self.missing.add(str(failure["missing"]).split(".")[0])
            if module in self.left and module not in done:
                done.add(module)
                line = {**failure, "module": module, "startup": True}
                self.channel.write(json.dumps(line) + "\n")
        if result.get("status") != "ok" and entry in self.left:
            done.add(entry)  # the startup's outcome is its outcome
        if run.hung and run.hung != entry and run.hung in self.left:
            line = {"module": run.hung, "status": "hung", "stack": result.get("stack", "")}
            self.channel.write(json.dumps({**line, "startup": True}) + "\n")
            done.add(run.hung)
        self.left -= done
        self._schedule(done)

    def _finish(self, run, result):
        if run.counted:
            self.importing -= 1
        run.counted = False
        if run.module == STARTUP:
            if not result.get("template"):
                self._close(run)
            self._started(run, result)
            return
        if result.get("status") == "present":
            self._cancel_next(run)
        if result.get("status") == "present" and run.base is not None and run.base is self.app:
            # The started app holds it already (imported under the radar of ``loaded``).
            self._close(run)
            self._place_waiting(run, False)
            self._emit(run, {"status": "ok", "startup": True})
            return
        if result.get("status") == "present":
            # The template's dependency had already imported it: redo it from the root.
            self._close(run)
            self._release(run.base)
            self._push(run.module, None, 0)
            return
        kept = bool(result.pop("template", False))
        if kept:
            self.templates[run.module] = run
            follower = run.next
            if follower is not None and follower.result is None and follower.died is None:
                # Its process forks the follower now: it is in flight from here on.
                follower.counted = True
                follower.deadline = time.monotonic() + self.timeout
                self.importing += 1
                self._prefetch(follower)
        else:
            self._cancel_next(run)
            self._close(run)
        self._place_waiting(run, kept)
        self._release(run.base)
        self._emit(run, result)
        if kept and run.refs <= 0:
            self._retire(run)

    def _close(self, run):
        self.runs.pop(run.sock.fileno(), None)
        run.sock.close()

    def _died(self, run):
        """Its socket closed without a result: a crash. Report it once its exit status is
        known (or after ``_STATUS_WAIT``)."""
        status = self.statuses.pop(run.pid, None)
        if status is None:
            if time.monotonic() - run.died < _STATUS_WAIT:
                return
            # It closed its socket but did not exit: stop it, like a hung import.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(run.pid, signal.SIGKILL)
        self._cancel_next(run)
        self._close(run)
        self._place_waiting(run, False)
        self._release(run.base)
        self._emit(run, {"status": "crashed", **(status or {})})

    def _hung(self, run):
        stack = []
        if run.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(run.pid, signal.SIGUSR1)
                wait = _STACK_WAIT
                while True:
                    ready, _, _ = select.select([run.sock], [], [], wait)
                    data = run.sock.recv(child.MSG) if ready else b""
                    if not data:
                        break
                    stack.append(data.decode("utf-8", "replace"))
                    wait = 0.05
            try:
                os.killpg(run.pid, signal.SIGKILL)  # with everything the import started
            except (ProcessLookupError, PermissionError):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(run.pid, signal.SIGKILL)
        if run.counted:
            self.importing -= 1
        run.counted = False
        self._cancel_next(run)
        self._close(run)
        self._place_waiting(run, False)
        self._release(run.base)
        text = "".join(stack)[-8000:]
        if run.module == STARTUP:
            # The rest starts from this pristine process: there, the module the startup hung
            # in raises at once, instead of hanging again in each of its importers.
            run.hung = self._hung_module(text) or run.entry
            if run.hung:
                child.poison(run.hung, f"{run.hung} hung while importing (the app's startup)")
        self._emit(run, {"status": "hung", "stack": text})

    def _hung_module(self, stack):
        """The innermost first-party module body in a ``faulthandler`` dump."""
        for line in stack.splitlines():  # most recent call first
            match = _FRAME.match(line)
            if not match or match.group(3).strip() != "<module>":
                continue
            path = match.group(1)
            if not path.startswith(self.scope.prefix) or not path.endswith(".py"):
                continue
            parts = path[len(self.scope.prefix) : -3].split(os.sep)
            if parts[-1] == "__init__":
                parts.pop()
            name = ".".join(parts)
            if name in self.spine:
                return name
        return None

    def _on_message(self, run, data):
        if not data:
            if run.module in self.templates and self.templates[run.module] is run:
                # A template died: what was to start from it starts from the root.
                self._template_died(run)
            elif run.result is not None:
                self._close(run)  # a retired template has exited
            elif run.pid is None:  # its template exited before forking it: start it again
                if run.counted:
                    self.importing -= 1
                run.counted = False
                if run.base is not None and run.base.next is run:
                    run.base.next = None
                self._close(run)
                self._release(run.base)
                self._push(run.module, None, 0)
            elif run.died is None:
                if run.counted:
                    self.importing -= 1
                run.counted = False
                run.died = time.monotonic()
                self._died(run)
            return
        try:
            message = json.loads(data)
        except ValueError:
            return  # not ours: e.g. a stack the module made faulthandler write
        if not isinstance(message, dict):
            return
        if "hello" in message:
            run.pid = message["hello"]
        elif "entry" in message and "status" not in message:
            # Each module of the startup gets its deadline; the entries, the app's.
            run.entry = message["entry"]
            scale = 1 if message.get("continued") else STARTUP_TIMEOUTS
            run.deadline = time.monotonic() + self.timeout * scale
            # The parent hears of progress: a long startup is not a silent worker.
            self.channel.write(json.dumps({"progress": run.entry}) + "\n")
        elif "failed" in message:
            run.failed[message.pop("failed")] = message
        elif "alive" in message:
            # The startup imported another module: it is not hung (yet).
            run.deadline = max(run.deadline, time.monotonic() + self.timeout)
        elif "loaded" in message and "status" not in message:
            run.loaded.extend(message["loaded"])
        elif "reaped" in message:
            self.statuses[message.pop("reaped")] = message
        elif "status" in message and run.result is None:
            run.result = message
            self._finish(run, message)

    def _reap(self):
        """Collect exited children of the root (and orphans adopted from templates)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            self.statuses[pid] = child.status_of(status)

    def serve(self):
        while self.left and self.taint is None:
            while self.ready and self.importing < self.jobs:
                self._start(*self.ready.pop())
            self._reap()
            dead = [r for r in self.runs.values() if r.died is not None]
            for run in dead:
                self._died(run)
            if not self.importing and not self.ready and not dead:
                # Nothing in flight and nothing to start, yet modules are left: cannot
                # happen with a plan whose spines form a forest; never hang on it.
                stuck = [m for waiting in self.waiting.values() for m in waiting]
                self.waiting.clear()
                self._push_all([(module, None, 0) for module in stuck])
                if not stuck:
                    break
                continue
            importing = [r for r in self.runs.values() if r.result is None and r.died is None]
            now = time.monotonic()
            timeout = min((r.deadline for r in importing), default=now + 1.0) - now
            if dead:
                timeout = min(timeout, _REAP_POLL)
            socks = [r.sock for r in self.runs.values()]
            ready, _, _ = select.select(socks, [], [], max(0.0, timeout))
            for sock in ready:
                run = self.runs.get(sock.fileno())
                if run is None:
                    continue
                try:
                    data = sock.recv(child.MSG)
                except OSError:
                    data = b""
                self._on_message(run, data)
            now = time.monotonic()
            for run in list(self.runs.values()):
                if run.result is not None or run.died is not None or now < run.deadline:
                    continue
                if run.pid is None:
                    # Its template never forked it: stop that template. Both sockets close, and
                    # the module starts again from the root.
                    run.deadline = now + self.timeout
                    if run.base is not None and run.base.pid:
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.killpg(run.base.pid, signal.SIGKILL)
                    continue
                # Preloading may have kept this loop busy: an answer may be waiting.
                pending, _, _ = select.select([run.sock], [], [], 0)
                if pending:
                    try:
                        data = run.sock.recv(child.MSG)
                    except OSError:
                        data = b""
                    self._on_message(run, data)
                if run.result is None and run.died is None and run.sock.fileno() in self.runs:
                    self._hung(run)
        self._stop()
        done = {"done": True, "taint": self.taint, "distributions": self._distributions()}
        self.channel.write(json.dumps(done) + "\n")

    def _distributions(self):
        """The distributions of the missing modules' top-level names, as this interpreter's
        installed metadata tells them (a distribution may be installed with a module
        missing): ``{top: [distribution, ...]}``."""
        if not self.missing:
            return {}
        try:
            from importlib.metadata import packages_distributions

            found = packages_distributions()
        except Exception:  # before 3.10, or broken metadata: the parent guesses
            return {}
        return {top: found[top] for top in self.missing if top in found}

    def _stop(self):
        """Retire every template, stop the children still importing (only after a taint:
        their modules go to the next worker), and reap them all, so that every process of
        the run is gone (and its CPU time accounted) when the parent hears ``done``."""
        for template in list(self.templates.values()):
            self._retire(template)
        for run in list(self.runs.values()):
            if run.result is None and run.pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(run.pid, signal.SIGKILL)
        deadline = time.monotonic() + _STATUS_WAIT
        while self.runs and time.monotonic() < deadline:
            socks = [r.sock for r in self.runs.values()]
            ready, _, _ = select.select(socks, [], [], max(0.0, deadline - time.monotonic()))
            for sock in ready:
                with contextlib.suppress(OSError):
                    if not sock.recv(child.MSG):  # it exited
                        self._close(self.runs[sock.fileno()])
        for run in list(self.runs.values()):
            self._close(run)
        # Exited processes may take a moment to become reapable; anything still running
        # after that is not ours to wait for (e.g. a daemon an import started).
        deadline = min(deadline, time.monotonic() + 0.5)
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break  # all reaped
            if not pid:
                time.sleep(_REAP_POLL)


def main():
    channel = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # stray prints from preloaded packages never corrupt the channel
    config = json.loads(sys.stdin.readline())
    root = config["root"]
    sys.path[0] = root  # the script's own directory must not shadow project modules
    child.become_subreaper()
    scope = child.Scope(root, config.get("first_party", []))
    preloader = child.Preloader(scope, config.get("never", []), config.get("preload_timeout", 10.0))
    child.PRELOADER = preloader
    taint = preloader.load(config.get("preload", []))
    if config.get("pycache"):  # after preloading, which reads the packages' own caches
        child.use_private_caches(config["pycache"], root, [m["name"] for m in config["modules"]])
    ready = {
        "ready": True,
        "preloaded": preloader.loaded,
        "taint": taint,
        "python": sys.executable,
        "version": sys.version.split()[0],
        "implementation": sys.implementation.name,
    }
    channel.write(json.dumps(ready) + "\n")
    if taint is not None:
        return
    task = None
    try:
        _Root(config, channel, scope, preloader).serve()
    except _Forked as forked:  # pragma: no cover - runs in the child
        task = forked.task
    if task is not None:  # outside the handler: the import must not see _Forked as context
        child.run(task)


if __name__ == "__main__":
    main()
