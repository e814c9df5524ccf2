#!/usr/bin/env python3
"""Where a BPF program's time goes, by source line: a sampling profile of `enforcer-bench`.

    sudo python3 tests/src/bench/profile.py [--program enforcer_xdp] [--top 40] -- \
        target/release/enforcer-bench --parts test-run --devices 100000 \
        --classes ipv4_allowed_reply --patterns hot --repeat 10000000 --out /tmp/p.json

Runs the benchmark under `perf record -a -e cpu-clock` and, while it runs, reads the program's
jited line table (`BPF_OBJ_GET_INFO_BY_FD`: each source line's first JIT address) and its
translated code with line numbers (`bpftool prog dump xlated linum`). Each sample in the program's
JIT image is then charged to the source line whose code holds it. What the program calls (the hash
map functions, helpers) shows under the kernel's own symbols, which are listed too.

A timer-interrupt sample lands on the instruction after the one that was running: the lines after
a call (a map lookup, a helper) carry its return. Compare two builds by the share of their lines,
not by the absolute counts. Needs perf, bpftool and root; nothing here writes to the program.
"""
import argparse
import bisect
import collections
import ctypes
import os
import re
import struct
import subprocess
import sys
import tempfile
import time

SYS_BPF = 321  # x86-64
BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID, BPF_OBJ_GET_INFO_BY_FD = 11, 13, 15
INFO_SIZE = 232  # struct bpf_prog_info up to attach_btf_id (Linux 6.x)
libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd, attr):
    """The bpf(2) call's result and the attribute as the kernel left it."""
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    ret = libc.syscall(SYS_BPF, cmd, buf, len(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret, buf.raw


def prog_info(fd, fill=None):
    info = ctypes.create_string_buffer(fill or b"\0" * INFO_SIZE, INFO_SIZE)
    bpf(BPF_OBJ_GET_INFO_BY_FD,
        struct.pack("IIQ", fd, INFO_SIZE, ctypes.addressof(info)) + b"\0" * 48)
    return info.raw


def line_table(fd, info):
    """The program's JIT functions (address, length) and its lines (JIT address, insn index)."""
    n_ksyms, n_lens = struct.unpack_from("II", info, 104)
    n_lines = struct.unpack_from("I", info, 148)[0]
    n_jited = struct.unpack_from("I", info, 168)[0]
    ksyms = ctypes.create_string_buffer(8 * n_ksyms)
    lens = ctypes.create_string_buffer(4 * n_lens)
    lines = ctypes.create_string_buffer(16 * n_lines)
    jited = ctypes.create_string_buffer(8 * n_jited)
    fill = bytearray(INFO_SIZE)
    struct.pack_into("IIQQ", fill, 104, n_ksyms, n_lens,
                     ctypes.addressof(ksyms), ctypes.addressof(lens))
    struct.pack_into("I", fill, 148, n_lines)
    struct.pack_into("QQ", fill, 152, ctypes.addressof(lines), ctypes.addressof(jited))
    struct.pack_into("III", fill, 168, n_jited, 16, 8)
    prog_info(fd, bytes(fill))
    funcs = list(zip(struct.unpack(f"{n_ksyms}Q", ksyms.raw), struct.unpack(f"{n_lens}I", lens.raw)))
    insn_offs = [struct.unpack_from("I", lines.raw, 16 * k)[0] for k in range(n_lines)]
    return funcs, sorted(zip(struct.unpack(f"{n_jited}Q", jited.raw), insn_offs))


def find_program(name):
    """The id, JIT functions and line table of a loaded program called `name`, if any."""
    prog_id = 0
    while True:
        try:
            _, attr = bpf(BPF_PROG_GET_NEXT_ID, struct.pack("II", prog_id, 0) + b"\0" * 64)
        except OSError:
            return None
        prog_id = struct.unpack_from("I", attr, 4)[0]
        try:
            fd, _ = bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("I", prog_id) + b"\0" * 64)
        except OSError:
            continue  # unloaded meanwhile
        try:
            info = prog_info(fd)
            if info[64:80].split(b"\0")[0].decode() == name:
                funcs, lines = line_table(fd, info)
                return {"id": prog_id, "funcs": funcs, "lines": lines}
        finally:
            os.close(fd)


def source_of_insns(xlated):
    """Translated instruction index -> (function, 'file:line source') from a linum dump."""
    out, func, src = {}, "?", None
    for line in xlated.splitlines():
        m = re.match(r"^; (.*) \[file:(\S+) line_num:(\d+)", line)
        if m:
            src = f"{os.path.basename(m.group(2))}:{m.group(3)} {m.group(1).strip()[:72]}"
        elif m := re.match(r"^\s*(\d+): ", line):
            out[int(m.group(1))] = (func, src)
        elif line and not line.startswith((" ", ";")):
            func = line.split("(")[0].split()[-1]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--program", default="enforcer_xdp")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--frequency", type=int, default=20000)
    ap.add_argument("bench", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    bench = a.bench[1:] if a.bench[:1] == ["--"] else a.bench
    if not bench:
        sys.exit("profile.py: give the benchmark's command after --")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-q", "-a", "-e", "cpu-clock",
                                 "-F", str(a.frequency), "-o", data, "--"] + bench)
        prog, xlated = None, ""
        while perf.poll() is None and prog is None:
            time.sleep(0.2)
            prog = find_program(a.program)
            if prog:
                xlated = subprocess.run(["bpftool", "prog", "dump", "xlated", "id",
                                         str(prog["id"]), "linum"],
                                        capture_output=True, text=True).stdout
                if not xlated:
                    prog = None
        if perf.wait() != 0:
            sys.exit(f"profile.py: the benchmark under perf exited with {perf.returncode}")
        if prog is None:
            sys.exit(f"profile.py: no program {a.program} was loaded while the benchmark ran")
        ips = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym"],
                             capture_output=True, text=True).stdout.splitlines()
        symbols = subprocess.run(["perf", "report", "-i", data, "--sort", "sym", "--stdio"],
                                 capture_output=True, text=True).stdout
    insns = source_of_insns(xlated)
    starts = [addr for addr, _ in prog["lines"]]
    low = min(f for f, _ in prog["funcs"])
    high = max(f + n for f, n in prog["funcs"])
    by_line, by_func, total = collections.Counter(), collections.Counter(), 0
    for row in ips:
        fields = row.split()
        if not fields:
            continue
        ip = int(fields[0], 16)
        if not low <= ip < high:
            continue
        k = bisect.bisect_right(starts, ip) - 1
        if k < 0:
            continue
        insn = prog["lines"][k][1]
        func, src = insns.get(insn, ("?", None))
        j = insn
        while src is None and j > 0:
            j -= 1
            src = insns.get(j, ("?", None))[1]
        by_line[src or "?"] += 1
        by_func[func] += 1
        total += 1
    if total == 0:
        sys.exit("profile.py: no sample fell in the program: run it longer (--repeat)")
    print(f"{a.program} (id {prog['id']}): {total} samples in its own code\n")
    print("by function:")
    for func, n in by_func.most_common():
        print(f"  {100 * n / total:5.1f}%  {func}")
    print("\nby file:")
    by_file = collections.Counter()
    for src, n in by_line.items():
        by_file[src.split(":")[0]] += n
    for f, n in by_file.most_common(12):
        print(f"  {100 * n / total:5.1f}%  {f}")
    print(f"\nby source line (top {a.top}):")
    for src, n in by_line.most_common(a.top):
        print(f"  {100 * n / total:5.1f}%  {src}")
    print("\nall samples by symbol (the program's callees are the kernel's own):")
    for line in [l for l in symbols.splitlines() if l.strip() and not l.startswith("#")][:15]:
        print(" ", line.strip())


if __name__ == "__main__":
    main()
