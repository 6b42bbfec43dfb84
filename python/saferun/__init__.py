"""Run a command so that it never hangs on a full pipe, never outlives its time limit,
never eats unbounded memory, and always says how it ended.

``saferun.run`` is ``subprocess.run`` through the ``saferun`` binary that this package
installs: the same arguments and the same ``CompletedProcess``, plus what ``subprocess``
cannot give:

- ``timeout`` stops the command's whole process tree (TERM, then KILL after
  ``kill_after``), and the result keeps the output it wrote until then, instead of an
  exception that loses it;
- a grandchild that keeps the pipe open (``sleep 100 &``) cannot hang the call;
- ``max_output`` bounds what is kept of each stream (its head and tail);
- the result says how the run ended (``end_reason``, ``timed_out``), what outlived the
  command (``leftovers``) and everything else saferun recorded (``report``).

>>> import saferun
>>> result = saferun.run(["sh", "-c", "echo hello; sleep 5"], timeout=0.5,
...                      capture_output=True, text=True)
>>> result.timed_out, result.returncode, result.stdout
(True, 124, 'hello\\n')
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from typing import IO, Any, Dict, List, Mapping, Optional, Sequence, Union

__all__ = ["run", "CompletedProcess", "SaferunError", "binary", "END_REASONS"]

#: How a run can end (``CompletedProcess.end_reason``), as saferun's report says it.
END_REASONS = (
    "exited",  # the command exited by itself
    "signaled",  # a signal nobody in saferun sent killed it
    "timeout",  # the wall-clock limit (``timeout``)
    "idle",  # the silence limit (``idle_timeout``)
    "cap",  # the output cap, with ``kill_at_max_output``
    "cancelled",  # saferun itself got INT, TERM or HUP and passed it on
    "failed",  # saferun could not run it (refused, not found, a file it could not open)
)

Duration = Union[int, float, str]
File = Union[None, int, IO[Any]]


def binary() -> str:
    """The ``saferun`` binary: ``$SAFERUN_BINARY``, else the one installed with this
    package (the environment's scripts directory, or the user's), else the first on
    ``PATH``."""
    explicit = os.environ.get("SAFERUN_BINARY")
    if explicit:
        return explicit
    name = "saferun.exe" if os.name == "nt" else "saferun"
    places = [sysconfig.get_path("scripts")]
    try:
        places.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:
        pass
    places.append(os.path.dirname(sys.executable))
    for place in places:
        if place:
            candidate = os.path.join(place, name)
            if os.access(candidate, os.X_OK):
                return candidate
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(
            "the saferun binary was not found: reinstall the package, or set SAFERUN_BINARY"
        )
    return found


class CompletedProcess(subprocess.CompletedProcess):
    """What ``subprocess.run`` returns, and how the run ended.

    ``returncode`` is saferun's exit status: the command's own, 124 after a timeout,
    137 if KILL was needed, 125/126/127 if the command could not be run, and ``-N``
    when the command died of signal N (as ``subprocess`` reports it).
    """

    #: How the run ended: one of :data:`END_REASONS`.
    end_reason: str
    #: A limit fired: ``timeout``, ``idle_timeout`` or a kill at ``max_output``.
    timed_out: bool
    #: Processes that outlived the command (``{"pid": …, "command": …}``).
    leftovers: List[Dict[str, Any]]
    #: saferun's whole JSON report (see saferun's docs/report.md).
    report: Dict[str, Any]

    def __init__(self, args: Any, returncode: int, stdout: Any, stderr: Any,
                 report: Dict[str, Any]) -> None:
        super().__init__(args, returncode, stdout, stderr)
        self.report = report
        self.end_reason = report.get("end_reason", "failed")
        self.timed_out = self.end_reason in ("timeout", "idle", "cap")
        self.leftovers = list(report.get("leftovers", {}).get("processes", []))

    def check_returncode(self) -> None:
        """Raises :class:`SaferunError` if the run did not succeed."""
        if self.returncode:
            raise SaferunError(self)

    def __repr__(self) -> str:
        return (f"CompletedProcess(args={self.args!r}, returncode={self.returncode!r}, "
                f"end_reason={self.end_reason!r})")


class SaferunError(subprocess.CalledProcessError):
    """``check=True`` and the run did not succeed: a ``CalledProcessError`` that also
    says how it ended (``end_reason``, ``timed_out``, ``report``)."""

    def __init__(self, result: CompletedProcess) -> None:
        super().__init__(result.returncode, result.args, result.stdout, result.stderr)
        self.result = result
        self.end_reason = result.end_reason
        self.timed_out = result.timed_out
        self.report = result.report

    def __str__(self) -> str:
        report = self.report
        how = {
            "timeout": "timed out",
            "idle": "was silent too long (idle timeout)",
            "cap": "exceeded max_output",
            "cancelled": "was cancelled by a signal to saferun",
            "failed": "could not be run",
            "signaled": "was killed by a signal",
        }.get(self.end_reason, "failed")
        detail = f"{how} (end reason: {self.end_reason}, exit status {self.returncode})"
        errors = report.get("errors") or []
        if errors:
            detail += ": " + "; ".join(str(e) for e in errors)
        return f"Command {self.cmd!r} {detail}"


def _duration(value: Duration) -> str:
    if isinstance(value, str):
        return value
    if value < 0:
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return repr(float(value))


def run(
    args: Union[str, Sequence[Union[str, "os.PathLike[str]"]]],
    *,
    timeout: Optional[Duration] = None,
    idle_timeout: Optional[Duration] = None,
    kill_after: Optional[Duration] = None,
    input: Union[None, bytes, str] = None,
    stdin: File = None,
    stdout: File = None,
    stderr: File = None,
    capture_output: bool = False,
    max_output: Optional[Union[int, str]] = None,
    kill_at_max_output: bool = False,
    check: bool = False,
    leftovers: Optional[str] = None,
    shell: bool = False,
    cwd: Union[None, str, "os.PathLike[str]"] = None,
    env: Optional[Mapping[str, str]] = None,
    text: Optional[bool] = None,
    encoding: Optional[str] = None,
    errors: Optional[str] = None,
    saferun_args: Sequence[str] = (),
) -> CompletedProcess:
    """Runs ``args`` through saferun and waits for it to end, as ``subprocess.run``.

    :param args: the command and its arguments (a string with ``shell=True``: run by
        ``/bin/sh -c``).
    :param timeout: wall-clock limit, in seconds or as saferun writes it (``"1m30s"``).
        When it fires the whole process tree gets TERM, then KILL after ``kill_after``;
        the result has ``timed_out`` set and ``returncode`` 124 (137 if KILL was
        needed), and keeps the output written until then. Never raises by itself.
    :param idle_timeout: limit on silence (no byte on stdout or stderr).
    :param kill_after: grace between TERM and KILL (saferun's default: 5 s).
    :param input: bytes (or ``str`` with ``text``) for the command's stdin.
    :param capture_output: capture stdout and stderr (``result.stdout``, ``.stderr``).
    :param max_output: keep at most this many bytes of each stream (an int, or
        ``"1M"``): the first half, and the last half after a
        ``[saferun: N bytes elided]`` line. The rest is read and dropped, so the
        command never blocks and memory stays bounded.
    :param kill_at_max_output: reaching ``max_output`` stops the command, like a timeout.
    :param check: raise :class:`SaferunError` (a ``CalledProcessError``, with the end
        reason in its message) if the run did not succeed.
    :param leftovers: what to do about processes that outlive the command: ``"warn"``
        (name them on stderr, saferun's default), ``"fail"`` (and exit 122), ``"kill"``.
    :param saferun_args: any other saferun options, given before the command.
    :returns: a :class:`CompletedProcess` with ``end_reason``, ``timed_out``,
        ``leftovers`` and ``report``.
    """
    if shell:
        if not isinstance(args, str):
            raise TypeError("shell=True takes the command as one string")
        command = ["/bin/sh", "-c", args]
    elif isinstance(args, (str, bytes, os.PathLike)):
        command = [os.fspath(args)]
    else:
        command = [os.fspath(a) for a in args]
    if input is not None and stdin is not None:
        raise ValueError("stdin and input arguments may not both be used.")
    if capture_output and (stdout is not None or stderr is not None):
        raise ValueError("stdout and stderr arguments may not be used with capture_output.")
    # CI markers belong in a job's log, not in a caller's captured stderr.
    options: List[str] = ["--ci", "none"]
    if timeout is not None:
        options += ["--timeout", _duration(timeout)]
    if idle_timeout is not None:
        options += ["--idle-timeout", _duration(idle_timeout)]
    if kill_after is not None:
        options += ["--kill-after", _duration(kill_after)]
    if max_output is not None:
        options += ["--max-output", str(max_output)]
        if kill_at_max_output:
            options += ["--on-max-output", "kill"]
    if leftovers is not None:
        options += ["--leftovers", leftovers]
    options += list(saferun_args)
    with tempfile.TemporaryDirectory(prefix="saferun-") as work:
        report_path = os.path.join(work, "report.json")
        argv = [binary(), "--report", report_path, *options, "--", *command]
        finished = subprocess.run(
            argv,
            input=input,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            capture_output=capture_output,
            cwd=cwd,
            env=None if env is None else dict(env),
            text=text,
            encoding=encoding,
            errors=errors,
        )
        try:
            with open(report_path, encoding="utf-8") as f:
                report = json.load(f)
        except (OSError, ValueError):
            report = {"end_reason": "failed", "errors": ["saferun wrote no report"]}
    result = CompletedProcess(command, finished.returncode, finished.stdout,
                              finished.stderr, report)
    if check:
        result.check_returncode()
    return result
