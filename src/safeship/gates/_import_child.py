"""The child side of the imports gate's fork server (see ``_import_worker.py``).

Standard library only: it runs in the worker interpreter, which must import nothing of the
project's and nothing of safeship's. A child imports one module and reports; a child that
is kept becomes a *zygote* and forks further children on request.
"""

import contextlib
import faulthandler
import gc
import json
import os
import signal
import socket
import sys
import threading
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
_OWN_FILES = {os.path.join(_HERE, n) for n in ("_import_worker.py", "_import_child.py")}
_LEARN_LIMIT = 400
MSG = 1 << 20
PRELOADER = None  # the root's, inherited by every child (zygotes preload too)


class _PreloadTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise _PreloadTimeout()


def _ours(filename):
    """Frames of this worker and of importlib's entry point say nothing about the module."""
    return (
        filename.startswith("<frozen")
        or filename in _OWN_FILES
        or filename.endswith(os.path.join("importlib", "__init__.py"))
    )


def _frames(exc):
    frames = [
        [f.filename, f.lineno, f.name, (f.line or "").strip()]
        for f in traceback.extract_tb(exc.__traceback__)
        if not _ours(f.filename)
    ]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append([exc.filename, exc.lineno or 0, "<module>", (exc.text or "").strip()])
    return frames[-30:]


def _type_name(exc):
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Scope:
    """First-party: a top-level name of the project, or a file under root that is not an
    installed package."""

    def __init__(self, root, first_party):
        self.prefix = root.rstrip(os.sep) + os.sep
        self.names = set(first_party)

    def first_party(self, name, module):
        if name.split(".")[0] in self.names:
            return True
        path = getattr(module, "__file__", None) or ""
        return path.startswith(self.prefix) and "site-packages" not in path


def send(sock, data):
    with contextlib.suppress(OSError):
        sock.send(json.dumps(data).encode())


# --- children ---------------------------------------------------------------------------


def _import(module, scope):
    before = set(sys.modules)
    try:
        __import__("importlib").import_module(module)
        result: dict[str, object] = {"status": "ok"}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import time are failures too
        try:
            message = str(exc)
        except Exception:
            message = "<unprintable exception>"
        result = {
            "status": "error",
            "type": _type_name(exc),
            "message": message[:4000],
            "frames": _frames(exc),
        }
    with contextlib.suppress(Exception):  # learning is an optimisation; never fail the result
        new = [(name, mod) for name, mod in list(sys.modules.items()) if name not in before]
        own = {name for name, mod in new if scope.first_party(name, mod)}
        result["executed"] = len(own)
        result["learn"] = [name for name, mod in new if name not in own][:_LEARN_LIMIT]
    return result


def child(sock, module, keep, scope):
    """Runs in a fresh fork: import ``module``, report, then exit or serve as a zygote."""
    os.setsid()  # own process group: a hang is killed with everything it started
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    # On SIGUSR1 (sent at the deadline) the C-level handler writes the stack to the socket
    # even while the import is blocked in a system call.
    faulthandler.register(signal.SIGUSR1, file=sock.fileno(), all_threads=True)
    send(sock, {"hello": os.getpid()})
    if module in sys.modules:  # the zygote's dependency imported it: not a fresh import
        send(sock, {"status": "present"})
        os._exit(0)
    threads = threading.active_count()
    result = _import(module, scope)
    faulthandler.unregister(signal.SIGUSR1)
    # A process with threads cannot be forked safely, and a failed import is no base.
    keep = keep and result["status"] == "ok" and threading.active_count() == threads
    result["zygote"] = keep
    send(sock, result)
    if not keep:
        os._exit(0)
    gc.freeze()  # what the import built is shared by every child: keep the collector off it
    _zygote(sock, scope)


def _zygote(sock, scope):
    children = set()
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, MSG, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        command = json.loads(data)
        if "fork" in command and fds:
            child_sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fds[0])
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the grandchild
                try:
                    sock.close()
                    child(child_sock, command["fork"], command.get("keep", False), scope)
                finally:
                    os._exit(70)
            child_sock.close()
            children.add(pid)
        elif "preload" in command:
            # What other imports needed from outside the project, so the next children
            # from this zygote do not import it again. If that would taint it, stop serving.
            if PRELOADER is not None and PRELOADER.load(command["preload"]) is not None:
                break
        elif "reap" in command:
            pid = command["reap"]
            status = wait(pid)
            children.discard(pid)
            send(sock, {"reaped": pid, **status})
        elif command.get("exit"):
            break
    for pid in children:
        wait(pid)
    os._exit(0)


def wait(pid):
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return {}
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit_code": os.WEXITSTATUS(status)}


# --- the root ---------------------------------------------------------------------------


class Preloader:
    def __init__(self, scope, never, timeout):
        self.scope = scope
        self.tried = set(never)
        self.timeout = timeout
        self.loaded = []

    def load(self, names):
        """Import ``names`` here; return ``[name, reason]`` if one tainted this process."""
        signal.signal(signal.SIGALRM, _on_alarm)
        try:
            for name in names:
                if name in self.tried or name == "__main__":
                    continue
                self.tried.add(name)
                if name in sys.modules:
                    self.loaded.append(name)
                    continue
                threads = threading.active_count()
                before = set(sys.modules)
                signal.setitimer(signal.ITIMER_REAL, self.timeout)
                try:
                    __import__(name)
                    imported = True
                except BaseException:  # costs only speed: the child reports real failures
                    imported = False
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                if threading.active_count() > threads:
                    return [name, "started a thread"]
                tainted = [
                    n
                    for n, m in list(sys.modules.items())
                    if n not in before and self.scope.first_party(n, m)
                ]
                if tainted:
                    return [name, f"imported first-party module {tainted[0]}"]
                if imported:
                    self.loaded.append(name)
        finally:
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
        gc.freeze()  # keep preloaded objects out of the collector, so children do not copy them
        return None
