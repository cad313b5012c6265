"""From opening a file in Neovim to its first inline suggestion, through the plugin and a real daemon.

    python bench/nvim_first_suggestion.py [--rounds 3] [--think-ms 0,2000,6000]

Each run is a fresh headless Neovim (the venv's, 0.11) with the plugin (editor-clients/nvim), as a
user sets it up: `complete.auto = true`, the default debounce (300 ms), `ember serve` on the real
SmolLM2 model with the conversion the tests cached (EMBER_TEST_CACHE, default .ember-cache/test:
no conversion in any figure). The run opens a Python file, waits `--think-ms` (the user looks
before typing), goes to the end of a line and types one character; the clock stops at the first
suggestion on screen (`User EmberCompletionShown`). Three starting points:

  cold        no daemon yet and `complete.warm = false` (what the plugin did before): the
              keystroke starts the daemon, which then loads the model
  warmed up   no daemon yet and `complete.warm = true` (the default now): opening the file starts
              the daemon and loads the model (`models/load`) while the user looks
  warm        in the same Neovim after one of the above: a second file, daemon and model ready

Reported per think time, the median (and every run) of open -> suggestion and keystroke ->
suggestion. Cold and warmed-up runs alternate round by round, so they share the machine's state.
Prints Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from isolation import ROOT, daemon_environment

BIN = Path(sys.executable).parent
NVIM = BIN / "nvim"
EMBER = BIN / "ember"
PLUGIN = ROOT / "editor-clients" / "nvim"

DRIVER = r"""
local out, think, warm = os.getenv("BENCH_OUT"), tonumber(os.getenv("BENCH_THINK_MS")), os.getenv("BENCH_WARM") == "1"
local dir = os.getenv("BENCH_DIR")
vim.cmd("filetype on")
require("ember").setup({
  cmd = { os.getenv("BENCH_EMBER"), "serve" },
  complete = { auto = true, warm = warm },
})
local shown = nil
vim.api.nvim_create_autocmd("User", { pattern = "EmberCompletionShown", callback = function()
  shown = shown or vim.uv.hrtime()
end })
local results = {}
local function finish()
  local f = assert(io.open(out, "w"))
  f:write(vim.json.encode(results))
  f:close()
  vim.cmd("qall!")
end
-- Open `file`, wait `think` ms, type one character at the end of line 2; then call `next`.
local function run(name, file, next)
  shown = nil
  local t0 = vim.uv.hrtime()
  vim.cmd.edit(file)
  vim.defer_fn(function()
    vim.api.nvim_win_set_cursor(0, { 2, 0 })
    vim.api.nvim_input("A")
    vim.defer_fn(function()
      local tk = vim.uv.hrtime()
      vim.api.nvim_input("s")
      local timer = vim.uv.new_timer()
      timer:start(5, 5, vim.schedule_wrap(function()
        if shown or (vim.uv.hrtime() - t0) > 180e9 then
          timer:stop()
          table.insert(results, {
            name = name,
            open_ms = shown and (shown - t0) / 1e6 or nil,
            key_ms = shown and (shown - tk) / 1e6 or nil,
          })
          vim.api.nvim_input("<Esc>")
          vim.schedule(next)
        end
      end))
    end, 20)
  end, think)
end
vim.schedule(function()
  run(warm and "warmed up" or "cold", dir .. "/first.py", function()
    run("warm", dir .. "/second.py", finish)
  end)
end)
"""

SOURCE = [
    "def area_of_circle(radius):",
    '    """The area of a circle of this radius."""',
    "    return 3.14159 * radius * radius",
    "",
]


def one_run(tmp: Path, warm: bool, think_ms: int) -> list[dict[str, float | str | None]]:
    work = Path(tempfile.mkdtemp(dir=tmp))
    (work / "first.py").write_text("import math\nradius = \n\n" + "\n".join(SOURCE))
    (work / "second.py").write_text("import os\nname = \n\n" + "\n".join(SOURCE))
    driver = work / "driver.lua"
    driver.write_text(DRIVER)
    out = work / "out.json"
    env = daemon_environment(work, EMBER_DAEMON__LOG_LEVEL="warning", XDG_STATE_HOME=str(work / "state"),
                             XDG_DATA_HOME=str(work / "data"), XDG_CACHE_HOME=str(work / "cache"))
    env.update({"BENCH_OUT": str(out), "BENCH_THINK_MS": str(think_ms), "BENCH_WARM": "1" if warm else "0",
                "BENCH_DIR": str(work), "BENCH_EMBER": str(EMBER)})
    # Without the Python provider: Neovim's python ftplugin probes it on the first .py file, which
    # takes about 2 s here and is no part of what the plugin costs.
    cmd = [str(NVIM), "--headless", "--clean", "-u", "NONE", "-i", "NONE", "-n",
           "--cmd", "let g:loaded_python3_provider = 0",
           "--cmd", f"set rtp^={PLUGIN}", "-c", f"luafile {driver}"]
    subprocess.run(cmd, env=env, cwd=work, capture_output=True, timeout=400, check=False)
    if not out.exists():
        raise SystemExit(f"no result from Neovim (see {work / 'state' / 'nvim' / 'ember.log'})")
    rows: list[dict[str, float | str | None]] = json.loads(out.read_text())
    return rows


def fmt(values: list[float]) -> str:
    if not values:
        return "no suggestion"
    runs = ", ".join(f"{v / 1000:.2f}" for v in values)
    return f"**{statistics.median(values) / 1000:.2f} s** ({runs})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--think-ms", default="0,2000,6000", help="comma-separated pauses between open and typing")
    args = ap.parse_args()
    thinks = [int(x) for x in args.think_ms.split(",") if x]
    tmp = Path(tempfile.mkdtemp(prefix="ember-nvim-first-"))
    table: dict[tuple[int, str], dict[str, list[float]]] = {}
    for think in thinks:
        for _ in range(args.rounds):
            for warm in (False, True):
                for row in one_run(tmp, warm, think):
                    cell = table.setdefault((think, str(row["name"])), {"open": [], "key": []})
                    if row.get("open_ms") is not None:
                        cell["open"].append(float(row["open_ms"]))  # type: ignore[arg-type]
                        cell["key"].append(float(row["key_ms"]))  # type: ignore[arg-type]
    print(f"Neovim {subprocess.run([str(NVIM), '--version'], capture_output=True, text=True).stdout.split()[1]}, "
          f"{args.rounds} rounds, {os.cpu_count()} cores\n")
    print("| think time | start | open -> first suggestion, median (runs) | keystroke -> first suggestion |")
    print("|---|---|---|---|")
    for think in thinks:
        for name in ("cold", "warmed up", "warm"):
            cell = table.get((think, name), {"open": [], "key": []})
            print(f"| {think / 1000:.1f} s | {name} | {fmt(cell['open'])} | {fmt(cell['key'])} |")


if __name__ == "__main__":
    main()
