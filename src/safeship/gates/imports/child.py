"""The child side of the imports gate's fork server (see ``worker.py``).

Standard library only: it runs in the worker interpreter, which must import nothing of the
project's and nothing of safeship's. A child imports one module and reports; a child that
is kept becomes a *template*: a live process holding what it imported, from which further
children are forked on request.

Every child starts its import at the same stack depth, whichever process forked it: a
template hands the new child back to ``run``'s loop instead of calling into it, so a chain
of templates never eats into the recursion limit of the modules imported at its end.
"""

import contextlib
import faulthandler
import gc
import json
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback

_HERE = os.path.dirname(os.path.abspath(__file__))
_OWN_FILES = {os.path.join(_HERE, n) for n in ("worker.py", "child.py")}
_LEARN_LIMIT = 400
_REAP_POLL = 0.02  # seconds between checks for exited children while some are running
MSG = 1 << 20
PRELOADER = None  # the root's, inherited by every child (templates preload too)
WROTE: list = []  # paths in the project's tree this process's import wrote to (audit hook)
HEARTBEAT: list = [None, 0.0]  # the startup's socket while it imports, and when it last spoke
_HEARTBEAT_EVERY = 0.5
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITE_EVENTS = frozenset(
    {
        "os.mkdir",
        "os.remove",
        "os.rename",
        "os.rmdir",
        "os.symlink",
        "os.link",
        "os.truncate",
        "os.chmod",
        "os.utime",
        "shutil.rmtree",
        "shutil.copyfile",
        "sqlite3.connect",
    }
)
LOADED: frozenset[str] = frozenset()
"""``sys.modules``' names when this process forked its children (set by the root and by
each template), so a child finds what its import added without touching every module: going
through all of them would write to (and so copy) thousands of shared pages per child."""


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
    # Source lines are read only for the frames kept: a RecursionError's traceback holds
    # hundreds of frames, and reading each one's line costs more than the import did.
    summary = traceback.StackSummary.extract(
        traceback.walk_tb(exc.__traceback__), lookup_lines=False
    )
    kept = [f for f in summary if not _ours(f.filename)][-30:]
    frames = [[f.filename, f.lineno, f.name, (f.line or "").strip()] for f in kept]
    if isinstance(exc, SyntaxError) and exc.filename:
        frames.append([exc.filename, exc.lineno or 0, "<module>", (exc.text or "").strip()])
    return frames[-30:]


def _type_name(exc):
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


class Scope:
    """First-party: a module whose spec's origin (or, for a namespace package, a search
    location) is inside the project's tree and not inside an installed environment. File
    names alone decide nothing: a stray ``http.log`` must not make the stdlib's ``http``
    first-party."""

    def __init__(self, root, first_party=()):
        self.prefix = os.path.realpath(root).rstrip(os.sep) + os.sep
        self.names = set(first_party)  # kept for callers; the origin decides

    def _inside(self, path):
        if not path or not isinstance(path, str):
            return False
        if not path.startswith(self.prefix):
            path = os.path.realpath(path)
            if not path.startswith(self.prefix):
                return False
        rest = path[len(self.prefix) :]
        return "site-packages" not in rest and "dist-packages" not in rest

    def first_party(self, name, module):
        spec = getattr(module, "__spec__", None)
        origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
        if origin and origin not in ("built-in", "frozen", "namespace"):
            return self._inside(origin)
        locations = getattr(spec, "submodule_search_locations", None)
        if locations is None:
            locations = getattr(module, "__path__", None) or ()
        try:
            return any(self._inside(str(p)) for p in list(locations))
        except Exception:
            return False


def send(sock, data):
    with contextlib.suppress(OSError):
        sock.send(json.dumps(data).encode())


def status_of(status):
    """A ``waitpid`` status as the parent reports it."""
    if os.WIFSIGNALED(status):
        return {"signal": os.WTERMSIG(status)}
    return {"exit_code": os.WEXITSTATUS(status)}


def reap(pids):
    """Collect every exited child among ``pids`` without blocking: ``{pid: status}``."""
    done = {}
    for pid in list(pids):
        try:
            got, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            got, status = pid, -1
        if got:
            pids.discard(pid)
            done[pid] = status_of(status) if status >= 0 else {}
    return done


def wait(pid):
    """Block until ``pid`` exits; its status, or ``{}`` if it is not our child."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return {}
    return status_of(status)


# --- children ---------------------------------------------------------------------------


def _added():
    """Names the import added to ``sys.modules``: they come after every name it had before,
    in insertion order."""
    added = []
    for name in reversed(sys.modules):
        if name in LOADED:
            break
        added.append(name)
    return added


def _missing(exc):
    """The module a ``ModuleNotFoundError`` (direct, or the cause of another error) names."""
    seen = 0
    while exc is not None and seen < 5:
        if isinstance(exc, ModuleNotFoundError) and isinstance(exc.name, str):
            return exc.name
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


def watch_writes(root):
    """Record in ``WROTE`` what the imports write under ``root`` (an audit hook: exact for
    Python-level writes; the parent's snapshot of the tree catches the rest). Installed in
    the startup's process, so the app and every module imported into a copy of it are
    watched; strict mode goes without (a hook's frame moves where a deep import chain
    reaches the recursion limit), and tells the writer by time alone."""
    prefix = os.path.realpath(root).rstrip(os.sep) + os.sep

    def inside(path):
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if not isinstance(path, str):
            return None
        path = os.path.abspath(path)
        return path if path.startswith(prefix) else None

    def hook(event, args):
        if event == "import":
            # While the startup imports, each new module is a sign of life: its deadline
            # is the time one module may take, not the whole app's.
            sock = HEARTBEAT[0]
            if sock is not None:
                now = time.monotonic()
                if now - HEARTBEAT[1] > _HEARTBEAT_EVERY:
                    HEARTBEAT[1] = now
                    send(sock, {"alive": True})
        elif event == "open":
            if len(args) < 3:
                return
            path, mode, flags = args[0], args[1], args[2]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & _WRITE_FLAGS
            )
            if writing and len(WROTE) < 100:
                found = inside(path)
                if found:
                    WROTE.append(found)
        elif event in _WRITE_EVENTS and args and len(WROTE) < 100:
            found = inside(args[0])
            if found:
                WROTE.append(found)

    sys.addaudithook(hook)


def _import(module, scope):
    WROTE.clear()
    started = time.time()
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
        missing = _missing(exc)
        if missing:
            result["missing"] = missing
        if _Failed in sys.meta_path:
            _remember(exc, scope)
            _Failed.failed.setdefault(module, exc)
    # When it ran, on the wall clock files are stamped with: what it wrote is found by time
    # when the audit hook did not see it.
    result["t"] = [started, time.time()]
    if WROTE:
        result["wrote"] = sorted(set(WROTE))
    with contextlib.suppress(Exception):  # these are optimisations; never fail the result
        added = _added()
        own = {name for name in added if scope.first_party(name, sys.modules.get(name))}
        result["executed"] = len(own)
        result["learn"] = [name for name in reversed(added) if name not in own][:_LEARN_LIMIT]
    return result


def run(task):
    """Runs in a fresh fork: import, and while this process is a template, become each child
    it forks. Never returns."""
    try:
        while task is not None:
            task = child(*task)
    finally:
        os._exit(70)


def child(sock, module, keep, scope, then=None):
    """Import ``module`` and report; then exit, or serve as a template and return the task of
    the next child it forks (to ``run``, in that child). ``then``: ``(socket, module,
    keep)`` of a child to fork at once if this process is kept, without waiting for the
    root to ask (the next link of a chain)."""
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
    if isinstance(module, dict):
        watch_writes(module.get("tree") or scope.prefix)
        return _startup(sock, module["entries"], scope, module.get("more", ()))
    if module in sys.modules:  # the template's dependency imported it: not a fresh import
        send(sock, {"status": "present"})
        os._exit(0)  # ``then``'s socket closes with it: the root starts that module again
    threads = threading.active_count()
    result = _import(module, scope)
    faulthandler.unregister(signal.SIGUSR1)
    # A process with threads cannot be forked safely. A failed import is no base, except
    # where failures are remembered (forked from the started app): there the modules
    # waiting for it meet the same failure at once, as its other importers do in the app.
    usable = result["status"] == "ok" or _Failed in sys.meta_path
    keep = keep and usable and threading.active_count() == threads
    result["template"] = keep
    send(sock, result)
    if not keep:
        os._exit(0)
    global LOADED
    LOADED = frozenset(sys.modules)
    gc.freeze()  # what the import built is shared by every child: keep the collector off it
    first = None
    if then is not None:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the new child
            sock.close()
            return (*then, scope)
        then[0].close()
        first = pid
    return _template(sock, scope, first)


class ImportHung(ImportError):
    """Raised, instead of importing it again, for a module whose import hung in the app's
    startup: each of its importers would otherwise wait for its own deadline."""


def poison(module, message):
    """From now on, importing ``module`` in this process (and its forks) raises at once."""
    _Failed.failed[module] = ImportHung(message)
    if _Failed not in sys.meta_path:
        sys.meta_path.insert(0, _Failed)


class _Failed:
    """A meta path finder that raises, for a first-party module whose import already failed
    in this process, the exception it failed with, instead of running it again.

    Python forgets a failed import: every later importer runs the module again, and with it
    every failed module between them, once per path through the import graph. Remembering
    the failure runs each failing body once, and every importer still fails with the same
    exception at the same line."""

    failed: dict = {}

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        exc = cls.failed.get(name)
        if exc is not None:
            raise exc
        return None


def _remember(exc, scope):
    """The first-party modules the exception interrupted (each was removed from
    ``sys.modules``): their names, new ones only."""
    names = []
    tb = exc.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name == "<module>" and scope._inside(frame.f_code.co_filename):
            name = frame.f_globals.get("__name__")
            if isinstance(name, str) and name not in _Failed.failed and name not in sys.modules:
                _Failed.failed[name] = exc
                names.append(name)
        tb = tb.tb_next
    return names


def _startup_import(sock, module, scope, continued):
    """Import one module of the startup; report it, and every module its failure took down."""
    send(sock, {"entry": module, "continued": continued})
    started = time.time()
    try:
        __import__("importlib").import_module(module)
        return {"status": "ok"}
    except BaseException as exc:  # as in ``_import``: every failure is a result
        try:
            message = str(exc)
        except Exception:
            message = "<unprintable exception>"
        result = {
            "status": "error",
            "type": _type_name(exc),
            "message": message[:4000],
            "frames": _frames(exc),
            "t": [started, time.time()],
        }
        missing = _missing(exc)
        if missing:
            result["missing"] = missing
        names = _remember(exc, scope)
        if module not in _Failed.failed and module not in sys.modules:
            _Failed.failed[module] = exc
            names.insert(0, module)
        for name in names:
            send(sock, {"failed": name, **result})
        return result


def _startup(sock, entries, scope, more=()):
    """The app's startup: import the entry modules in order, in this one process, as the
    service does. If one fails, go on with ``more`` (the rest of what the entries import,
    each module after its own imports) in this process, so that every module that breaks
    startup is found, not only the first. This process then serves as the template of every
    other module, whatever the outcome (a failed startup still holds the modules it
    imported), so each of them meets the state a lazy import meets in the running app."""
    threads = threading.active_count()
    before = set(sys.modules)
    sys.meta_path.insert(0, _Failed)
    WROTE.clear()
    HEARTBEAT[0] = sock
    result: dict[str, object] = {"status": "ok"}
    started = time.time()
    for entry in entries:
        outcome = _startup_import(sock, entry, scope, False)
        if outcome["status"] != "ok":
            result = dict(outcome)
            result["entry"] = entry
            break
    if result["status"] != "ok":
        for module in more:
            if module not in sys.modules and module not in _Failed.failed:
                _startup_import(sock, module, scope, True)
    faulthandler.unregister(signal.SIGUSR1)
    HEARTBEAT[0] = None
    result["t"] = [started, time.time()]
    if WROTE:
        result["wrote"] = sorted(set(WROTE))
    loaded = []
    with contextlib.suppress(Exception):
        loaded = [
            n for n, m in list(sys.modules.items()) if n not in before and scope.first_party(n, m)
        ]
    result["executed"] = len(loaded) + len(_Failed.failed)
    # In parts: a SOCK_SEQPACKET message must fit the socket's send buffer.
    part, size = [], 0
    for name in loaded:
        part.append(name)
        size += len(name) + 4
        if size > 32768:
            send(sock, {"loaded": part})
            part, size = [], 0
    if part:
        send(sock, {"loaded": part})
    # Threads the app started stay behind in the forked children (only the forking thread
    # is copied); forking anyway is what makes this fast, and a lock such a thread held at
    # the fork shows up as a hung import, with its stack.
    result["threads"] = threading.active_count() - threads
    result["template"] = True
    send(sock, result)
    global LOADED
    LOADED = frozenset(sys.modules)
    gc.freeze()
    return _template(sock, scope)


def _template(sock, scope, first=None):
    """Fork children on the root's request. Reports each child's exit status when it has
    reaped it (the root needs it when a child dies without reporting). ``first``: a child
    already forked."""
    global LOADED
    children: set[int] = {first} if first else set()
    while True:
        if children:
            for pid, status in reap(children).items():
                send(sock, {"reaped": pid, **status})
        ready, _, _ = select.select([sock], [], [], _REAP_POLL if children else None)
        if not ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(sock, MSG, 2)
        except OSError:
            data, fds = b"", []
        if not data:
            break
        command = json.loads(data)
        if "fork" in command and fds:
            socks = [socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET, fileno=fd) for fd in fds]
            then = None
            if command.get("next") and len(socks) > 1:
                then = (socks[1], command["next"][0], bool(command["next"][1]))
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the new child
                sock.close()
                return (socks[0], command["fork"], command.get("keep", False), scope, then)
            for each in socks:
                each.close()
            children.add(pid)
        elif "preload" in command:
            # What other imports needed from outside the project, so the next children
            # from this template do not import it again. If that would taint it, stop serving.
            if PRELOADER is not None and PRELOADER.load(command["preload"]) is not None:
                break
            LOADED = frozenset(sys.modules)
        elif command.get("exit"):
            break
    sock.close()
    if not SUBREAPER:
        # Children still running would go to init, and their exit statuses with them.
        for pid in children:
            wait(pid)
    os._exit(0)


# --- the root ---------------------------------------------------------------------------

SUBREAPER = False
"""Whether the root adopts (and reaps) the children of templates that exit before them."""


def become_subreaper():
    """Make this process the reaper of its orphaned descendants (Linux), so a template can
    exit as soon as nothing more starts from it, without waiting for its children."""
    global SUBREAPER
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        SUBREAPER = libc.prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError, ImportError):
        SUBREAPER = False
    return SUBREAPER


def use_private_caches(directory, root, modules):
    """Read and write bytecode caches under ``directory``, never in the project's tree
    (and even where PYTHONDONTWRITEBYTECODE is set: without caches every child would compile
    every module it runs, again and again). Valid caches stay in use: those of the project's modules,
    of the standard library and of the packages loaded so far (which children may import
    more of, e.g. pydantic's lazy submodules) are linked into ``directory``; a stale one is
    replaced there, never where it came from."""
    import importlib.util
    import sysconfig

    tag = f".{sys.implementation.cache_tag}.pyc"
    found = []
    for name in modules:
        base = os.path.join(root, *name.split("."))
        for source in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(source):
                found.append((source, importlib.util.cache_from_source(source)))
                break
    libraries = {sysconfig.get_paths()["stdlib"]}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if "site-packages" in path:
            top = path.split("site-packages" + os.sep, 1)
            if len(top) == 2 and os.sep in top[1]:
                libraries.add(top[0] + "site-packages" + os.sep + top[1].split(os.sep)[0])
    for library in libraries:
        # A cache directory kept between runs has these links already: walk a library once.
        marker = os.path.join(directory, ".seeded" + library.replace(os.sep, "_") + tag)
        if os.path.exists(marker):
            continue
        with contextlib.suppress(OSError):
            os.makedirs(directory, exist_ok=True)
            open(marker, "w").close()
        for folder, subfolders, files in os.walk(library):
            subfolders[:] = [d for d in subfolders if d not in ("site-packages", "test", "tests")]
            if os.path.basename(folder) == "__pycache__":
                parent = os.path.dirname(folder)
                for file in files:
                    if file.endswith(tag):
                        source = os.path.join(parent, file[: -len(tag)] + ".py")
                        found.append((source, os.path.join(folder, file)))
    sys.pycache_prefix = directory
    sys.dont_write_bytecode = False
    made = set()
    for source, cached in found:
        with contextlib.suppress(OSError):
            link = importlib.util.cache_from_source(source)
            if not _fresh(cached, source):
                continue  # stale or absent: compiled here, or kept from an earlier run
            folder = os.path.dirname(link)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            if os.path.lexists(link):
                os.unlink(link)
            os.symlink(cached, link)


def _fresh(cached, source):
    """Whether the bytecode cache ``cached`` is valid for ``source`` (its header holds the
    source's time stamp and size, as the import system checks them)."""
    import importlib.util

    try:
        with open(cached, "rb") as file:
            header = file.read(16)
        st = os.stat(source)
    except OSError:
        return False
    return (
        len(header) == 16
        and header[:4] == importlib.util.MAGIC_NUMBER
        and int.from_bytes(header[4:8], "little") == 0
        and int.from_bytes(header[8:12], "little") == int(st.st_mtime) & 0xFFFFFFFF
        and int.from_bytes(header[12:16], "little") == st.st_size & 0xFFFFFFFF
    )


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
        global LOADED
        LOADED = frozenset(sys.modules)
        gc.freeze()  # keep preloaded objects out of the collector, so children do not copy them
        return None
