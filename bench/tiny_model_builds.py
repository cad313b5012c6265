"""How long each tiny test model takes to build (the tests rely on builds taking seconds).

    python bench/tiny_model_builds.py

Builds every model in tests/tiny_models.py into a temporary folder, twice (the second build reuses
the trained tokenizer, as later builds in a test process do), and prints the times as Markdown.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import tiny_models  # noqa: E402


def main() -> None:
    print("| builder | first build s | second build s | size KB |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name, builder in tiny_models.BUILDERS.items():
            times = []
            for attempt in range(2):
                folder = Path(tmp) / f"{name}-{attempt}"
                started = time.perf_counter()
                builder(folder)
                times.append(time.perf_counter() - started)
            size = sum(p.stat().st_size for p in folder.iterdir()) / 1024
            print(f"| {name} | {times[0]:.2f} | {times[1]:.2f} | {size:.0f} |")


if __name__ == "__main__":
    main()
