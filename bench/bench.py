#!/usr/bin/env python3
"""saferun's benchmark: every figure side by side with its baseline, in one run.

Throughput paths run A/B interleaved, every process pinned to one CPU (taskset -c 0),
so the ratio measures CPU per byte. Prints one line per figure; `--markdown` prints the
table used in docs/performance.md.

    bench/run                 # build release, run everything
    SIZE_MIB=256 bench/run    # smaller volume, quicker
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAFERUN = os.environ.get("SAFERUN", os.path.join(ROOT, "target", "release", "saferun"))
SIZE_MIB = int(os.environ.get("SIZE_MIB", "1024"))
ROUNDS = int(os.environ.get("ROUNDS", "5"))
PIN = ["taskset", "-c", "0"]
ENV = dict(os.environ, LC_ALL="C")
ENV.pop("SAFERUN_DEADLINE", None)

results = []


def sh(cmd, pin=True):
    """Runs a shell command, returns its wall time in seconds."""
    argv = (PIN if pin else []) + ["sh", "-c", cmd]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=ENV)
    return time.perf_counter() - start


def ab(name, direct, wrapped, goal, size_bytes=None, rounds=ROUNDS):
    """Interleaves A and B, reports B's throughput relative to A (1.0 = same speed)."""
    a, b = [], []
    sh(direct)
    sh(wrapped)
    for _ in range(rounds):
        a.append(sh(direct))
        b.append(sh(wrapped))
    ta, tb = statistics.median(a), statistics.median(b)
    ratio = ta / tb
    extra = ""
    if size_bytes:
        extra = f"  ({size_bytes / ta / 2**30:.2f} vs {size_bytes / tb / 2**30:.2f} GiB/s)"
    record(name, f"{ratio:.2f}", goal, f"median {ta*1000:.0f} ms vs {tb*1000:.0f} ms{extra}")
    return ratio


def record(name, value, goal, detail):
    results.append((name, value, goal, detail))
    print(f"{name:58} {value:>10}  goal {goal:<12} {detail}", flush=True)


def report_of(args, stdin=None):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subprocess.run(
            [SAFERUN, "--report", f.name] + args,
            check=False,
            env=ENV,
            stdin=stdin,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return json.load(open(f.name))


def throughput(work):
    size = SIZE_MIB * 2**20
    half = size // 2
    s = SAFERUN
    produce = f"head -c {size} /dev/zero"
    ab("stdout: saferun / direct pipe", f"{produce} | cat >/dev/null",
       f"{s} -- {produce} | cat >/dev/null", ">= 0.95", size)
    ab("stderr: saferun / direct pipe", f"{produce} | cat >/dev/null",
       f"{s} -- sh -c '{produce} >&2' 2>&1 >/dev/null | cat >/dev/null", ">= 0.95", size)
    ab("stdin: saferun / direct pipe", f"{produce} | cat >/dev/null",
       f"{produce} | {s} -- sh -c 'cat >/dev/null'", ">= 0.95", size)
    both = f"head -c {half} /dev/zero & head -c {half} /dev/zero >&2; wait"
    ab("stdout+stderr at once: saferun / direct", f"sh -c '{both}' 2>&1 | cat >/dev/null",
       f"{s} -- sh -c '{both}' 2>&1 | cat >/dev/null", ">= 0.95", size)
    out = os.path.join(work, "out.bin")
    ab("-o file: saferun / producer > file", f"{produce} >{out}",
       f"{s} -o {out} -- {produce}", ">= 0.75", size)
    ab("-e file: saferun / producer 2> file", f"{produce} >{out}",
       f"{s} -e {out} -- sh -c '{produce} >&2'", ">= 0.75", size)
    ab("(compare) -o file --tee: saferun / producer | tee file",
       f"{produce} | tee {out} | cat >/dev/null",
       f"{s} -o {out} --tee -- {produce} | cat >/dev/null", "-", size)
    os.unlink(out)
    # Comparisons: other relays on the same path.
    ab("(compare) cat as a relay / direct", f"{produce} | cat >/dev/null",
       f"{produce} | cat | cat >/dev/null", "-", size)
    if shutil.which("pv"):
        ab("(compare) pv as a relay / direct", f"{produce} | cat >/dev/null",
           f"{produce} | pv -q | cat >/dev/null", "-", size)
    py = ("import subprocess,sys; subprocess.run(['head','-c','%d','/dev/zero'],"
          "capture_output=True)" % size)
    ab("(compare) python subprocess.run(capture_output) / direct",
       f"{produce} | cat >/dev/null", f"python3 -c \"{py}\"", "-", size, rounds=3)


def memory():
    small = report_of(["--", "head", "-c", str(16 * 2**20), "/dev/zero"])
    big = report_of(["--", "head", "-c", str(2 * 2**30), "/dev/zero"])
    a, b = small["saferun_max_rss_kib"], big["saferun_max_rss_kib"]
    record("peak RSS, 2 GiB passed through (KiB)", str(b), "<= 4096",
           f"16 MiB: {a} KiB, 2 GiB: {b} KiB, growth {b - a} KiB")
    quiet = report_of(["--quiet-unless-fail", "--", "head", "-c", str(2**30), "/dev/zero"])
    record("peak RSS, 1 GiB held by --quiet-unless-fail (KiB)",
           str(quiet["saferun_max_rss_kib"]), "small", "spills to an unnamed temp file")
    py = subprocess.run(
        ["/usr/bin/time", "-f", "%M", "python3", "-c",
         "import subprocess; subprocess.run(['head','-c','%d','/dev/zero'], capture_output=True)"
         % 2**30],
        capture_output=True, text=True, env=ENV)
    record("(compare) python capture_output, 1 GiB, peak RSS (KiB)",
           py.stderr.strip().splitlines()[-1], "-", "")


def startup():
    """Per-run cost of starting a command, from a shell loop (so the loop's own cost is
    the same for all three), pinned to one CPU, interleaved."""
    n = 500
    def loop(cmd):
        script = (f"i=0; while [ $i -lt {n} ]; do {cmd} </dev/null >/dev/null 2>&1; "
                  "i=$((i+1)); done")
        return sh(script) / n
    a, b, c = [], [], []
    for _ in range(9):
        a.append(loop("/bin/true"))
        b.append(loop("timeout 100 true"))
        c.append(loop(f"{SAFERUN} -- true"))
    ta, tb, tc = (statistics.median(x) for x in (a, b, c))
    ratio = (tc - ta) / (tb - ta)
    record("start-up overhead: saferun / GNU timeout", f"{ratio:.2f}", "<= 1.5",
           f"true {ta*1e6:.0f} µs, timeout {tb*1e6:.0f} µs, saferun {tc*1e6:.0f} µs")


def precision():
    """From the deadline to the end: saferun's own clock (the report's duration minus the
    timeout), and the caller's wall clock (which adds saferun's own start and exit)."""
    inside, wall = [], []
    for _ in range(21):
        start = time.perf_counter()
        r = report_of(["-t", "0.2", "--", "sleep", "10"])
        wall.append(time.perf_counter() - start - 0.2)
        inside.append(r["duration_seconds"] - 0.2)
    record("timeout precision: deadline to end of run, -t 0.2 (ms)",
           f"{statistics.median(inside)*1000:.2f}", "<= 5",
           f"max {max(inside)*1000:.2f}; caller's wall clock: median "
           f"{statistics.median(wall)*1000:.2f}, includes saferun's start and exit")


def latency():
    """A line's trip from the command to the reader: the command stamps each line with
    the monotonic clock as it writes it, the reader subtracts on arrival. Direct pipe vs
    through saferun; the difference is what saferun adds to one line."""
    child = ("import sys, time\n"
             "for i in range(1500):\n"
             "    sys.stdout.write('%d\\n' % time.monotonic_ns()); sys.stdout.flush()\n"
             "    time.sleep(0.001)\n")
    def trip(argv):
        p = subprocess.Popen(argv + ["python3", "-c", child], stdout=subprocess.PIPE,
                             env=ENV, stdin=subprocess.DEVNULL)
        delays = []
        for line in p.stdout:
            delays.append(time.monotonic_ns() - int(line))
        p.wait()
        return statistics.median(delays[100:]) / 1000
    direct, wrapped = [], []
    for _ in range(3):
        direct.append(trip([]))
        wrapped.append(trip([SAFERUN, "--"]))
    d, w = statistics.median(direct), statistics.median(wrapped)
    record("latency a line gains through saferun (µs)", f"{w - d:.1f}", "<= 50",
           f"direct pipe {d:.1f} µs, through saferun {w:.1f} µs (median of 1400 lines x 3)")


def line_mode(work):
    text = os.path.join(work, "lines.txt")
    with open(text, "w") as f:
        for i in range(300_000):
            f.write(f"line number {i} of some build output\n")
    size = os.path.getsize(text)
    ab("--prefix / sed -u 's/^/p: /'", f"sed -u 's/^/p: /' <{text} | cat >/dev/null",
       f"{SAFERUN} --prefix 'p: ' -- cat {text} | cat >/dev/null", "as high as possible",
       size, rounds=3)
    ab("--prefix / sed 's/^/p: /' (buffered, may cut lines)",
       f"sed 's/^/p: /' <{text} | cat >/dev/null",
       f"{SAFERUN} --prefix 'p: ' -- cat {text} | cat >/dev/null", "-", size, rounds=3)


def main():
    if not os.path.exists(SAFERUN):
        sys.exit(f"build first: {SAFERUN} is missing")
    print(f"saferun benchmark: {SIZE_MIB} MiB per throughput run, {ROUNDS} rounds, "
          f"pinned with {' '.join(PIN)}; {os.cpu_count()} CPUs; kernel {os.uname().release}")
    work = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        only = sys.argv[1:] or ["throughput", "memory", "startup", "precision", "latency", "lines"]
        if "throughput" in only:
            throughput(work)
        if "memory" in only:
            memory()
        if "startup" in only:
            startup()
        if "precision" in only:
            precision()
        if "latency" in only:
            latency()
        if "lines" in only:
            line_mode(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
