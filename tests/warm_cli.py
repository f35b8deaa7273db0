"""``python -m encdec.<entry point> ...`` for tests, without paying the interpreter's start-up
(importing torch, Lightning and torchmetrics: about 5 s of CPU) for every command.

A warm interpreter (this file run as a script) imports what every entry point imports, then
forks one child per command. The child is a process of its own, as ``python -m`` would make
it: its own process group, working directory, environment, stdin/stdout/stderr files,
``sys.argv``, the module run as ``__main__`` by :func:`runpy.run_module`, and its exit code or
signal returned. What differs from a cold start is only that the imports were done before
the command was known, so a warm interpreter is kept per set of environment variables (those
a library may read when it is imported); variables read only while a command runs
(``RUN_TIME_VARIABLES``) may differ between the commands one interpreter serves, and a command
given its own ``PYTHON*`` variables (read as the interpreter starts: ``PYTHONPROFILEIMPORTTIME``
for a test of what a command imports) runs in a cold interpreter.

What only a fresh interpreter shows stays tested in one: the first of README's commands for
each entry point (tests/test_readme.py), what ``encdec.translate`` imports, the allocator and
the preloading launcher.
"""

import atexit
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRELOADED = ("encdec.train", "encdec.evaluate", "encdec.translate", "encdec.utils.config")
# read while a command runs, never at import: may differ between the commands one interpreter serves
RUN_TIME_VARIABLES = {"PYTEST_CURRENT_TEST", "WANDB_MODE", "PROJECT_ROOT"}
MAX_IDLE = 3  # interpreters kept per test process; the least recently used is closed beyond it


def _serve() -> None:
    """The warm interpreter: import, say ready, then for each request line fork a child that
    runs the command, reply its pid, and reply its exit code once it ends."""
    import importlib

    for module in PRELOADED:
        importlib.import_module(module)
    replies = sys.stdout
    print("ready", file=replies, flush=True)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _run_in_child(request)
        print(json.dumps({"pid": pid}), file=replies, flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


def _run_in_child(request: dict) -> None:
    """Become the command's process; never returns (an uncaught exception ends the process
    with a traceback and exit code 1, as in ``python -m`` or ``python script.py``)."""
    import runpy

    os.setpgid(0, 0)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in (
        (0, request["stdin"], os.O_RDONLY),
        (1, request["stdout"], os.O_WRONLY),
        (2, request["stderr"], os.O_WRONLY),
    ):
        opened = os.open(path, flags)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(0, encoding=sys.stdin.encoding, closefd=False)  # noqa: SIM115
    if "script" in request:  # python script.py: the script's folder first on the path
        script = str(Path(request["script"]).resolve())
        sys.argv, sys.path[0] = [script, *request["args"]], str(Path(script).parent)
        runpy.run_path(script, run_name="__main__")
    else:  # python -m module: the working directory first; runpy puts the module's file first
        sys.argv, sys.path[0] = [request["module"], *request["args"]], os.getcwd()
        sys.modules.pop(request["module"], None)  # preloaded: run afresh, as __main__ only
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
    sys.exit(0)


def _argv(command: dict[str, str], args: list[str]) -> list[str]:
    """The command line a cold start would run: python -m module / python script, then args."""
    named = ["-m", command["module"]] if "module" in command else [command["script"]]
    return [sys.executable, *named, *args]


class WarmInterpreter:
    """One warm interpreter process, serving commands one at a time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="warm-python-", suffix=".log")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, __file__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=ROOT,
            env=env,
        )
        self.unread = b""
        if self._reply(time.monotonic() + 300) != "ready":
            raise RuntimeError(f"the warm interpreter did not start: {self.log.name}")

    def _reply(self, deadline: float) -> str | None:
        """The next line the interpreter writes, or None at the deadline."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        while b"\n" not in self.unread:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the warm interpreter died: {Path(self.log.name).read_text()}")
            self.unread += chunk
        line, self.unread = self.unread.split(b"\n", 1)
        return line.decode()

    def run(
        self, command: dict[str, str], args: list[str], cwd: Path, env: dict[str, str], stdin: str,
        timeout: float,
    ) -> subprocess.CompletedProcess:  # fmt: skip
        """``command``: {"module": name} or {"script": path}."""
        argv = _argv(command, args)
        with tempfile.TemporaryDirectory(prefix="warm-command-") as folder:
            files = {name: Path(folder) / name for name in ("stdin", "stdout", "stderr")}
            files["stdin"].write_text(stdin)
            files["stdout"].touch()
            files["stderr"].touch()
            request = {**command, "args": args, "cwd": str(cwd), "env": env}
            request |= {name: str(path) for name, path in files.items()}
            assert self.process.stdin is not None
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            deadline = time.monotonic() + timeout
            pid = json.loads(self._reply(deadline) or "{}")["pid"]
            reply = self._reply(deadline)
            if reply is None:  # past the timeout: the command and what it started
                os.killpg(pid, signal.SIGKILL)
                self._reply(time.monotonic() + 60)
                raise subprocess.TimeoutExpired(argv, timeout)
            returncode = json.loads(reply)["returncode"]
            stdout, stderr = (files[name].read_text() for name in ("stdout", "stderr"))
            return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


Key = frozenset[tuple[str, str]]
_idle: list[tuple[Key, WarmInterpreter]] = []  # waiting for a command, the most recent last
_idle_lock = threading.Lock()


def _close_all() -> None:
    with _idle_lock:
        for _, interpreter in _idle:
            interpreter.close()
        _idle.clear()


atexit.register(_close_all)


def _run(
    command: dict[str, str], args: tuple[str, ...], cwd: Path, env: dict[str, str] | None,
    stdin: str, timeout: float,
) -> subprocess.CompletedProcess:  # fmt: skip
    """Run the command in an idle warm interpreter for its environment (a new one if none is
    idle: commands may run at once from several threads), then leave that one idle."""
    env = dict(os.environ if env is None else env)
    starting = {k: v for k, v in env.items() if k.startswith("PYTHON")}
    if starting != {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}:
        return _run_cold(command, args, cwd, env, stdin, timeout)  # the interpreter reads them
    key = frozenset((k, v) for k, v in env.items() if k not in RUN_TIME_VARIABLES)
    with _idle_lock:
        found = [i for i, (k, warm) in enumerate(_idle) if k == key and warm.process.poll() is None]
        interpreter = _idle.pop(found[-1])[1] if found else None
    interpreter = interpreter or WarmInterpreter(env)
    try:
        return interpreter.run(command, list(args), Path(cwd), env, stdin, timeout)
    finally:
        with _idle_lock:
            _idle.append((key, interpreter))
            while len(_idle) > MAX_IDLE:
                _idle.pop(0)[1].close()


def _run_cold(
    command: dict[str, str], args: tuple[str, ...], cwd: Path, env: dict[str, str],
    stdin: str, timeout: float,
) -> subprocess.CompletedProcess:  # fmt: skip
    return subprocess.run(
        _argv(command, list(args)), input=stdin, text=True, capture_output=True, cwd=cwd,
        env=env, timeout=timeout,
    )  # fmt: skip


def run_module(
    module: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
    stdin: str = "", timeout: float = 300,
) -> subprocess.CompletedProcess:  # fmt: skip
    """What ``subprocess.run([python, "-m", module, *args], text=True, capture_output=True,
    ...)`` returns, from a child of the warm interpreter for ``env`` (default: this process's)."""
    return _run({"module": module}, args, cwd, env, stdin, timeout)


def run_script(
    script: str, *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
    stdin: str = "", timeout: float = 300,
) -> subprocess.CompletedProcess:  # fmt: skip
    """The same for ``python script *args`` (``script`` relative to ``cwd`` or absolute)."""
    return _run({"script": str(Path(cwd) / script)}, args, cwd, env, stdin, timeout)


if __name__ == "__main__":
    _serve()
