-- The terminal UI against the real daemon (`ember serve` on SmolLM2, behind the recording proxy):
-- what a user sees on opening a Python file and typing, and when the daemon is killed. Run by
-- tests/editors/test_nvim.py (marked `editor`).
local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local H = dofile(root .. "/tests/harness.lua")
local T = dofile(root .. "/tests/tui.lua")
T.H = H

local tmp = assert(os.getenv("EMBER_TEST_TMP"))
local cmd = {
  assert(os.getenv("EMBER_TEST_PYTHON")),
  assert(os.getenv("EMBER_TEST_PROXY")),
  assert(os.getenv("EMBER_TEST_WIRE")),
  assert(os.getenv("EMBER_TEST_EMBER")),
  "serve",
}
local GEN_MS = 120000

local t = nil

H.case("tui real: opening a Python file loads SmolLM2 quietly; typing brings a suggestion on screen", function()
  local dir = tmp .. "/tui-real"
  vim.fn.mkdir(dir, "p")
  vim.fn.writefile({ "def area_of_circle(radius):", "    return " }, dir .. "/area.py")
  vim.fn.writefile({ "A paragraph of prose that the daemon will be asked to summarize." }, dir .. "/prose.txt")
  t = T.start({
    dir = dir,
    file = "area.py",
    setup = { cmd = cmd, complete = { auto = true, max_tokens = 16 }, summarize = { max_tokens = 64 } },
  })
  -- Nothing was typed: the model loads because the file is one where completion is on.
  H.wait(function()
    return t:statusline():find("Ember: SmolLM2-135M-Instruct", 1, true)
  end, GEN_MS, "the model loaded on open, named in the statusline")
  t:type("2GA")
  t:type("3")
  H.wait(function()
    return t:lua("return require('ember').has_suggestion()")
  end, GEN_MS, "the first suggestion")
  H.wait(function()
    local row = t:screen()[2]
    return #row > #"    return 3" and row
  end, 5000, "the ghost text on screen")
  t:type("\27")
  for _, line in ipairs(t.cmdlines) do
    H.ok(not line:find("Ember", 1, true), "the command line showed: " .. line)
  end
  H.eq("", t:messages(), ":messages")
  t:check_prompt()
end)

H.case("tui real: the daemon killed by signal 9 during a command: one line that says so, no prompt", function()
  H.ok(t, "the first case started Neovim")
  t:type(":edit! prose.txt\r")
  t:wait_screen("A paragraph of prose", 5000, "the prose file")
  local pid = t:lua("return require('ember.daemon').info().pid")
  t:type(":Ember summarize\r")
  H.wait(function()
    return t:lua("return require('ember.daemon').client_state().pending") > 0
  end, 5000, "the summarize request in flight")
  vim.uv.kill(pid, "sigkill")
  local line = H.wait(function()
    local l = t:cmdline()
    return l:find("killed by signal 9", 1, true) and l
  end, 10000, "the error on the command line")
  H.ok(line:find("summarize failed: the daemon was killed by signal 9", 1, true), line)
  H.wait(function()
    return t:statusline():find("Ember: SmolLM2-135M-Instruct", 1, true) or t:statusline():find("Ember: starting", 1, true)
      or t:statusline():find("Ember: restarting", 1, true)
  end, 10000, "the restart in the statusline")
  t:type("\27")
  t:type("ggIok \27")
  H.wait(function()
    return t:mode().mode == "n" and t:call("nvim_buf_get_lines", 0, 0, 1, false)[1]:sub(1, 3) == "ok "
  end, 5000, "the next keys typed into the buffer")
  t:check_prompt()
end)

H.after_all = function()
  if t then
    t:stop()
  end
end

H.run()
