"""How long `pacebench --help` takes against `import torch` (the goal: under half), best of N fresh processes.

    python benchmarks/cli_startup.py [--repeat 5]

Measured on the development box (2 CPU cores, no GPU), 2026-12-06: see benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

HELP = (
    "import sys\nsys.argv = ['pacebench', '--help']\nfrom pacebench.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass"
)


def best(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    help_s, torch_s, python_s = (best(c, args.repeat) for c in (HELP, "import torch", "pass"))
    print(
        f"python alone {python_s:.3f} s, pacebench --help {help_s:.3f} s, import torch {torch_s:.3f} s: "
        f"help / torch = {help_s / torch_s:.2f} (goal < 0.5)"
    )


if __name__ == "__main__":
    main()
