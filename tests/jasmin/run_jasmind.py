#!/usr/bin/env python3
"""Start Jasmin 0.11.0's own jasmind.py, unchanged, with one difference: its machine-wide
lock. jasmind.py takes `lockfile.FileLock("/tmp/jasmind")` (jasmin#265) and exits with
"Lock not acquired ! exiting" when another jasmind holds it for 2 s, so two tests could not
each run their own jasmind at the same time. Here FileLock is pointed at
$SB_JASMIND_LOCK (a path in the test's temp dir) before jasmind.py runs.

Usage: python run_jasmind.py /path/to/venv/bin/jasmind.py -c jasmin.cfg [jasmind options]
"""
import os
import runpy
import sys

import lockfile

lock_path = os.environ.get("SB_JASMIND_LOCK")
if not lock_path:
    sys.exit("run_jasmind.py: set SB_JASMIND_LOCK to a per-instance lock path")
_FileLock = lockfile.FileLock
lockfile.FileLock = lambda _path, *a, **kw: _FileLock(lock_path, *a, **kw)

jasmind = sys.argv[1]
sys.argv = [jasmind] + sys.argv[2:]
runpy.run_path(jasmind, run_name="__main__")
