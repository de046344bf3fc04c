"""Run every benchmark in turn and print their figures with the machine they ran on.

`make bench` (or `python -m bench.run_all [--quick]`). Each benchmark is its own script
in bench/, runnable alone with more options; this only strings them together.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import subprocess
import sys


def machine() -> str:
    """Describe the machine: cores, CPU model, memory, Python and SQLite versions."""
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = ""
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        mem = f", {pages / 2**30:.0f} GiB RAM"
    except (ValueError, OSError):
        pass
    return (
        f"{os.cpu_count()} cores ({model}){mem}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke check")
    args = parser.parse_args()
    runs = [
        ["bench.import_orders", "--rows", "100000" if args.quick else "1000000"],
        ["bench.callback_load", "--n", "500" if args.quick else "5000", "--rate", "200"],
        ["bench.scan_stages", "--n", "100" if args.quick else "500"],
        ["bench.push_budget", "--periods", "1" if args.quick else "2"],
        ["bench.predictive_fit", "--buyers", "100000" if args.quick else "1000000"],
    ]
    print(f"machine: {machine()}", flush=True)
    failed = 0
    for module, *options in runs:
        print(f"\n=== python -m {module} {' '.join(options)}", flush=True)
        result = subprocess.run([sys.executable, "-m", module, *options], check=False)
        failed += result.returncode != 0
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
