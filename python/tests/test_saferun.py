"""The Python module, against the installed saferun binary (run in a fresh virtual
environment after `pip install .`)."""

import gzip
import hashlib
import os
import subprocess
import sys
import time

import pytest

import saferun

PY = sys.executable


def test_the_binary_is_the_one_installed_with_the_package():
    path = saferun.binary()
    assert os.access(path, os.X_OK)
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("saferun ")


def test_gzip_of_an_input_bigger_than_any_pipe():
    data = os.urandom(3 << 20) + b"x" * (5 << 20)
    result = saferun.run(["gzip", "-c"], input=data, capture_output=True, timeout=60,
                         check=True)
    assert result.returncode == 0 and result.end_reason == "exited"
    assert hashlib.sha256(gzip.decompress(result.stdout)).digest() == \
        hashlib.sha256(data).digest()


def test_6000_lines_on_stderr_while_stdout_is_read():
    child = "import sys\nfor i in range(6000):\n    print('line', i, 'x' * 60, file=sys.stderr)\n"
    result = saferun.run([PY, "-c", child], capture_output=True, text=True, timeout=30)
    lines = result.stderr.splitlines()
    assert result.returncode == 0
    assert len(lines) == 6000 and lines[-1].startswith("line 5999 ")


def test_a_timeout_is_a_result_that_keeps_the_output():
    started = time.monotonic()
    result = saferun.run(["sh", "-c", "echo started; sleep 600"], timeout=0.5,
                         capture_output=True, text=True)
    assert result.timed_out and result.end_reason == "timeout"
    assert result.returncode == 124
    assert result.stdout == "started\n"
    assert "timed out after" in result.stderr
    assert time.monotonic() - started < 10


def test_check_raises_a_called_process_error_with_the_end_reason():
    with pytest.raises(saferun.SaferunError) as caught:
        saferun.run(["sleep", "10"], timeout=0.3, check=True)
    error = caught.value
    assert isinstance(error, subprocess.CalledProcessError)
    assert error.returncode == 124 and error.timed_out
    assert "timed out" in str(error) and "end reason: timeout" in str(error)

    with pytest.raises(saferun.SaferunError) as caught:
        saferun.run(["sh", "-c", "exit 3"], check=True)
    assert caught.value.returncode == 3 and caught.value.end_reason == "exited"


def test_a_grandchild_holding_the_pipe_cannot_hang_the_call():
    started = time.monotonic()
    result = saferun.run(["sh", "-c", "sleep 300 & echo done"], capture_output=True,
                         text=True, timeout=60, saferun_args=["--linger", "0.3"])
    assert result.stdout == "done\n"
    assert time.monotonic() - started < 10
    assert [p["command"] for p in result.leftovers] == ["sleep 300"]
    for process in result.leftovers:
        os.kill(process["pid"], 9)


def test_max_output_bounds_what_is_kept():
    result = saferun.run(["seq", "1000000"], capture_output=True, max_output="64K",
                         timeout=60)
    assert result.returncode == 0
    assert len(result.stdout) < 70_000
    assert result.stdout.startswith(b"1\n2\n3\n") and result.stdout.endswith(b"1000000\n")
    assert b"bytes elided]" in result.stdout
    assert result.report["streams"]["stdout"]["truncated"] is True


def test_idle_timeout_and_the_report():
    result = saferun.run(["sh", "-c", "echo one; sleep 30"], idle_timeout=0.4,
                         capture_output=True)
    assert result.end_reason == "idle" and result.timed_out
    assert result.report["schema_version"] == 1
    assert result.report["argv"] == ["sh", "-c", "echo one; sleep 30"]


def test_a_command_that_does_not_exist():
    result = saferun.run(["no-such-command-here"], capture_output=True, text=True)
    assert result.returncode == 127 and result.end_reason == "failed"
    with pytest.raises(saferun.SaferunError, match="could not be run"):
        saferun.run(["no-such-command-here"], capture_output=True, check=True)


def test_a_death_by_signal_reads_as_subprocess_reports_it():
    result = saferun.run(["sh", "-c", "kill -TERM $$"])
    assert result.returncode == -15 and result.end_reason == "signaled"


def test_shell_text_cwd_and_env(tmp_path):
    result = saferun.run("echo $GREETING from $(pwd)", shell=True, capture_output=True,
                         text=True, cwd=tmp_path, env={**os.environ, "GREETING": "hi"})
    assert result.stdout == f"hi from {tmp_path}\n"


def test_arguments_subprocess_refuses_are_refused_the_same_way():
    with pytest.raises(ValueError):
        saferun.run(["true"], input=b"x", stdin=subprocess.DEVNULL)
    with pytest.raises(ValueError):
        saferun.run(["true"], capture_output=True, stdout=subprocess.DEVNULL)
    with pytest.raises(ValueError):
        saferun.run(["true"], timeout=-1)
