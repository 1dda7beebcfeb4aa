#!/usr/bin/env python3
"""What one fdatasync costs this machine: 2,000 appends of 600 bytes, each followed by
fdatasync, into a file that grows (as the journal's segments do) and into one written over in
place (preallocated). Prints the wall time per sync, this process's CPU per sync (user + system:
the kernel's sync path runs in the caller) and the whole machine's busy time per sync.

    python3 benches/fsync_probe.py [DIR]      # DIR on the disk to measure (default: .)

Resolution: CPU times come in 10 ms ticks, so each figure is good to about 5 µs.
"""
import os
import sys
import time


def busy_ticks():
    with open("/proc/stat") as f:
        s = f.readline().split()
    return sum(int(x) for x in s[1:]) - int(s[4]) - int(s[5])


def run(directory, prealloc, n=2000, size=600):
    path = os.path.join(directory, "fsync_probe.bin")
    if os.path.exists(path):
        os.remove(path)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY)
    try:
        if prealloc:
            os.write(fd, b"\0" * (n * size + 4096))
            os.fsync(fd)
            os.lseek(fd, 0, 0)
        buf = b"x" * size
        t0, c0, b0 = time.time(), os.times(), busy_ticks()
        for _ in range(n):
            os.write(fd, buf)
            os.fdatasync(fd)
        t1, c1, b1 = time.time(), os.times(), busy_ticks()
    finally:
        os.close(fd)
        os.remove(path)
    cpu = (c1.user + c1.system) - (c0.user + c0.system)
    tick = 1e6 / os.sysconf("SC_CLK_TCK")
    print(f"{'written over' if prealloc else 'growing':>12}: {(t1 - t0) / n * 1e6:6.0f} µs a sync (wall), "
          f"{cpu / n * 1e6:5.1f} µs CPU of this process, {(b1 - b0) * tick / n:5.1f} µs machine busy")


if __name__ == "__main__":
    directory = sys.argv[1] if len(sys.argv) > 1 else "."
    for _ in range(2):
        run(directory, False)
        run(directory, True)
