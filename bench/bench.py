#!/usr/bin/env python3
"""saferun's benchmark: every figure side by side with its baseline, in one run.

Throughput paths run A/B interleaved, every process pinned to one CPU (taskset -c 0),
so the ratio measures CPU per byte. The baseline is the fastest direct pipe (a C writer
and reader with 1 MiB write/read calls, bench/loads.c), and the limit is a bare C splice
relay with 256 KiB pipes: what any relay could reach here. Prints one line per figure.

    bench/run                 # build release, run everything
    SIZE_MIB=256 bench/run    # smaller volume, quicker
    bench/run throughput quota small
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
ROUNDS = int(os.environ.get("ROUNDS", "7"))
PIN = ["taskset", "-c", "0"]
ENV = dict(os.environ, LC_ALL="C")
ENV.pop("SAFERUN_DEADLINE", None)
LOADS = None  # the compiled bench/loads.c

results = []


def sh(cmd, pin=True):
    """Runs a shell command, returns its wall time in seconds."""
    argv = (PIN if pin else []) + ["sh", "-c", cmd]
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=ENV)
    return time.perf_counter() - start


def ab(name, direct, wrapped, goal, size_bytes=None, rounds=ROUNDS, quiet=False):
    """Interleaves A and B (order swapped every other round), and reports B's speed
    relative to A's (1.0 = same speed): the median of the round-by-round ratios."""
    a, b, ratios = [], [], []
    sh(direct)
    sh(wrapped)
    for i in range(rounds):
        pair = [(direct, a), (wrapped, b)]
        for cmd, times in pair if i % 2 == 0 else reversed(pair):
            times.append(sh(cmd))
        ratios.append(a[-1] / b[-1])
    ta, tb = statistics.median(a), statistics.median(b)
    ratio = statistics.median(ratios)
    if not quiet:
        extra = ""
        if size_bytes:
            extra = f"  ({size_bytes / ta / 2**30:.2f} vs {size_bytes / tb / 2**30:.2f} GiB/s)"
        record(name, f"{ratio:.3f}", goal,
               f"range {min(ratios):.2f}-{max(ratios):.2f}, median {ta*1000:.0f} ms vs "
               f"{tb*1000:.0f} ms{extra}")
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


def build_loads(work):
    global LOADS
    LOADS = os.path.join(work, "loads")
    subprocess.run(["cc", "-O2", "-o", LOADS, os.path.join(ROOT, "bench", "loads.c")],
                   check=True)
    os.chmod(work, 0o755)


def throughput(work):
    size = SIZE_MIB * 2**20
    s, w, r = SAFERUN, f"{LOADS} write {size}", f"{LOADS} read {size}"
    direct = f"{w} 1 | {r}"
    relay = ab("(limit) bare splice relay / direct pipe", direct,
               f"{w} 1 | {LOADS} relay | {r}", "-", size)
    paths = [
        ("stdout", f"{s} -- {w} 1 | {r}"),
        ("stderr", f"{s} -- {w} 2 2>&1 >/dev/null | {r}"),
        ("stdin", f"{w} 1 | {s} -- {r}"),
        ("stdout+stderr", f"{{ {s} -- {w} 3 2>&3 | {LOADS} read {size // 2}; }} 3>&1 "
                          f"| {LOADS} read {size // 2}"),
    ]
    for label, wrapped in paths:
        base = direct
        if label == "stdout+stderr":
            base = (f"{{ {w} 3 2>&3 | {LOADS} read {size // 2}; }} 3>&1 "
                    f"| {LOADS} read {size // 2}")
        ratio = ab(f"{label}: saferun / direct pipe", base, wrapped, ">= 0.85", size)
        record(f"{label}: (saferun / direct) / (relay / direct)", f"{ratio / relay:.3f}",
               ">= 0.97", "")
    out = os.path.join(work, "out.bin")
    ab("-o file: saferun / producer > file (tmpfs)", f"{w} 1 >{out}",
       f"{s} -o {out} -- {w} 1", ">= 0.75", size)
    ab("-e file: saferun / producer 2> file (tmpfs)", f"{w} 2 2>{out}",
       f"{s} -e {out} -- {w} 2", ">= 0.75", size)
    ab("(peer) -o file --tee: saferun / producer | tee file",
       f"{w} 1 | tee {out} | {r}", f"{s} -o {out} --tee -- {w} 1 | {r}", "-", size)
    os.unlink(out)
    # Peers: other relays on the same path, against the same direct pipe.
    ab("(peer) cat as a relay / direct pipe", direct, f"{w} 1 | cat | {r}", "-", size)
    if shutil.which("pv"):
        ab("(peer) pv -q as a relay / direct pipe", direct, f"{w} 1 | pv -q | {r}", "-", size)
    py = (f"import subprocess; subprocess.run(['{LOADS}','write','{size}','1'],"
          "capture_output=True)")
    ab("(peer) python subprocess.run(capture_output) / direct", direct,
       f"python3 -c \"{py}\"", "-", size, rounds=3)


def small(work):
    """Small writes a parent has not read yet: how many 16-byte lines the command writes
    before it blocks, when nobody reads the pipe saferun writes into, against the same
    command on a plain pipe. Every output option."""
    def held(argv_prefix):
        counter = os.path.join(work, "count")
        if os.path.exists(counter):
            os.unlink(counter)
        reader_r, reader_w = os.pipe()  # never read
        p = subprocess.Popen(argv_prefix + [LOADS, "lines", counter], stdout=reader_w,
                             stderr=reader_w, stdin=subprocess.DEVNULL, env=ENV,
                             start_new_session=True)
        os.close(reader_w)
        time.sleep(1.0)
        os.killpg(p.pid, 9)
        p.wait()
        os.close(reader_r)
        return int(open(counter).read()) * 16 if os.path.exists(counter) else 0
    direct = held([])
    for flags in [[], ["--merge"], ["-o", "/dev/stdout", "--tee"], ["--prefix", "p: "],
                  ["--timestamps"], ["--max-output", "1M"]]:
        through = held([SAFERUN] + flags + ["--"])
        record(f"small writes held before the command blocks: {' '.join(flags) or 'default'}",
               f"{through // 1024} KiB", f">= {direct // 1024} KiB",
               f"direct pipe {direct} bytes, through saferun {through} bytes")


AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def pipe_quota_free():
    """What is left of the unprivileged user's pipe quota: pipes grown 1 MiB at a time
    until the kernel refuses."""
    probe = ("import fcntl, os\n"
             "held, total = [], 0\n"
             "while True:\n"
             "    r, w = os.pipe(); held += [r, w]\n"
             "    try:\n"
             "        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 1 << 20); total += 1 << 20\n"
             "    except OSError:\n"
             "        break\n"
             "print(total)\n")
    out = subprocess.run(AS_NOBODY + ["python3", "-c", probe], capture_output=True,
                         text=True, env=ENV, check=True)
    return int(out.stdout)


def quota(work):
    """Pipe memory of 16 saferuns, each streaming both outputs at once, as an
    unprivileged user: how much of the user's pipe quota they take, found by what is
    left of it (pipes grown 1 MiB at a time until the kernel refuses)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        record("pipe memory of 16 busy runs", "skipped", "<= 25%", "needs root and setpriv")
        return
    soft = int(open("/proc/sys/fs/pipe-user-pages-soft").read()) * 4096
    as_user = AS_NOBODY
    free = pipe_quota_free
    before = free()
    runs = []
    big = 64 * 2**30
    for _ in range(16):
        cmd = (f"{{ {SAFERUN} -- {LOADS} write {big} 3 2>&3 | {LOADS} read {big // 2}; }} "
               f"3>&1 | {LOADS} read {big // 2}")
        runs.append(subprocess.Popen(as_user + ["sh", "-c", cmd], env=ENV,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True))
    time.sleep(2.0)
    during = free()
    for p in runs:
        os.killpg(p.pid, 9)
    for p in runs:
        p.wait()
    used = before - during
    record("pipe memory of 16 runs streaming both outputs (unprivileged)",
           f"{used * 100 / soft:.0f}%", "<= 25%",
           f"{used // 2**20} MiB of pipe-user-pages-soft {soft // 2**20} MiB "
           f"(free for a new pipe of that user: {before // 2**20} MiB before, "
           f"{during // 2**20} MiB during)")


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


def several(work):
    """Several commands in one saferun: the cost per job against xargs -P and GNU
    parallel on the same 1000 short commands (16 at once), and what 100 long-running
    jobs at once cost saferun (memory, descriptors, threads, the user's pipe quota)."""
    n, jobs = 1000, 16
    args = []
    for i in range(n):
        args += ([":::"] if i else []) + ["true"]
    tools = {
        "xargs -P": f"seq {n} | xargs -P {jobs} -I{{}} true",
        "saferun -j": None,
    }
    if shutil.which("parallel"):
        tools["GNU parallel -j"] = f"seq {n} | parallel -j {jobs} true >/dev/null"
    times = {name: [] for name in tools}
    for _ in range(3):
        for name, cmd in tools.items():
            start = time.perf_counter()
            if cmd is None:
                subprocess.run([SAFERUN, "-j", str(jobs), "--"] + args, env=ENV, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                subprocess.run(["sh", "-c", cmd], env=ENV, check=True)
            times[name].append(time.perf_counter() - start)
    per_job = {name: statistics.median(t) / n * 1e6 for name, t in times.items()}
    record(f"{n} short commands, {jobs} at once: µs per job (saferun)",
           f"{per_job['saferun -j']:.0f}", "same order",
           ", ".join(f"{name} {us:.0f} µs" for name, us in per_job.items()))

    # 100 long-running jobs: saferun's own figures while they all run.
    def while_running(count):
        sleep_args = []
        for i in range(count):
            sleep_args += ([":::"] if i else []) + ["sleep", "4"]
        p = subprocess.Popen([SAFERUN, "--"] + sleep_args, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        pid = p.pid
        status = open(f"/proc/{pid}/status").read()
        rss = int(next(l.split()[1] for l in status.splitlines() if l.startswith("VmRSS")))
        threads = int(next(l.split()[1] for l in status.splitlines()
                           if l.startswith("Threads")))
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        p.wait()
        return rss, fds, threads
    small_rss, small_fds, small_threads = while_running(10)
    rss, fds, threads = while_running(100)
    record("100 long-running jobs at once: saferun's RSS (KiB)", str(rss), "flat",
           f"10 jobs {small_rss} KiB, 100 jobs {rss} KiB: "
           f"{(rss - small_rss) / 90:.0f} KiB per job; descriptors {small_fds} -> {fds}, "
           f"threads {small_threads} -> {threads}")
    if os.geteuid() == 0 and shutil.which("setpriv"):
        as_user = AS_NOBODY
        soft = int(open("/proc/sys/fs/pipe-user-pages-soft").read()) * 4096
        free = pipe_quota_free
        before = free()
        sleep_args = []
        for i in range(100):
            sleep_args += ([":::"] if i else []) + ["sleep", "4"]
        p = subprocess.Popen(as_user + [SAFERUN, "--"] + sleep_args, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(2.0)
        during = free()
        p.wait()
        used = before - during
        record("100 long-running jobs: pipe memory of the user's quota", 
               f"{used * 100 / soft:.0f}%", "within quota",
               f"{used // 2**20} MiB of pipe-user-pages-soft {soft // 2**20} MiB")
    left = subprocess.run(["pgrep", "-c", "-x", "sleep"], capture_output=True, text=True)
    record("processes left after the runs (sleep)", left.stdout.strip() or "0", "0", "")


def main():
    if not os.path.exists(SAFERUN):
        sys.exit(f"build first: {SAFERUN} is missing")
    print(f"saferun benchmark: {SIZE_MIB} MiB per throughput run, {ROUNDS} rounds, "
          f"pinned with {' '.join(PIN)}; {os.cpu_count()} CPUs; kernel {os.uname().release}")
    work = tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    try:
        build_loads(work)
        only = sys.argv[1:] or ["throughput", "small", "quota", "memory", "startup",
                                "precision", "latency", "lines", "several"]
        if "throughput" in only:
            throughput(work)
        if "small" in only:
            small(work)
        if "quota" in only:
            quota(work)
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
        if "several" in only:
            several(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
