-- The plugin as a user meets it: Neovim with its terminal UI in a terminal, typed into through the
-- pty (tests/tui.lua), against tests/editors/fake_daemon.py. What these cases check can only be
-- seen there: what the command line and the statusline show while the user types, and whether a
-- hit-enter prompt comes up (every case fails if one ever does). Run by tests/editors/test_nvim.py.
local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local H = dofile(root .. "/tests/harness.lua")
local T = dofile(root .. "/tests/tui.lua")
T.H = H

local python = assert(os.getenv("EMBER_TEST_PYTHON"))
local fake = assert(os.getenv("EMBER_TEST_FAKE"))
local tmp = assert(os.getenv("EMBER_TEST_TMP"))
local n = 0

local function fake_cmd(...)
  n = n + 1
  local rec = ("%s/tui-record-%d.jsonl"):format(tmp, n)
  return vim.list_extend({ python, fake, "--record", rec }, { ... }), rec
end

local function received(rec, method)
  return vim.tbl_filter(function(e)
    return e.dir == "in" and e.msg.method == method
  end, H.record(rec))
end

--- A folder with files, and a child Neovim in a terminal opened on one of them.
local function child(name, file, setup, init)
  local dir = ("%s/tui-%s"):format(tmp, name)
  vim.fn.mkdir(dir, "p")
  vim.fn.writefile({ "x = 1", "" }, dir .. "/code.py")
  vim.fn.writefile({ "# Notes", "", "Some prose to read.", "" }, dir .. "/notes.md")
  vim.fn.writefile({ "Some text to summarize, in a paragraph.", "" }, dir .. "/notes.txt")
  local t = T.start({ dir = dir, file = file, setup = setup, init = init })
  return t, dir
end

local function buffer_lines(t)
  return t:call("nvim_buf_get_lines", 0, 0, -1, false)
end

local running = nil -- the child of the case that runs

local function case(name, fn)
  H.case(name, function()
    local ok, err = xpcall(fn, debug.traceback)
    local screen = running and running:screen_text()
    if running then
      local prompts = running.prompts
      pcall(running.stop, running)
      running = nil
      if ok and #prompts > 0 then
        error("a hit-enter prompt was shown:\n" .. prompts[1])
      end
    end
    if not ok then
      error(err .. (screen and ("\n--- the child's screen ---\n" .. screen) or ""), 0)
    end
  end)
end

---------------------------------------------------------------------------------------------

case("tui: model loading shows in the statusline, never on the command line, while the user types", function()
  local cmd, rec = fake_cmd("--load-delay", "2", "--complete-texts", "completion()")
  local t = child("load", "code.py", { cmd = cmd, complete = { auto = true, debounce_ms = 50 } })
  running = t
  -- Opening code.py loaded the model at once (warm); the user starts typing meanwhile.
  t:type("Go")
  t:type("y = ")
  t:wait_screen("Ember: loading FakeLM-7M-Instruct", 10000, "the load in the statusline")
  H.eq("i", t:mode().mode, "still typing in insert mode")
  t:type("z")
  -- The suggestion comes once the model is ready; the statusline then names the model.
  t:wait_screen("y = zcompletion()", 15000, "the suggestion")
  H.wait(function()
    return t:statusline():find("Ember: FakeLM-7M-Instruct", 1, true)
  end, 5000, "the model's own name in the statusline")
  H.eq(1, #received(rec, "models/load"), "models/load sent once, at open")
  for _, line in ipairs(t.cmdlines) do
    H.ok(not line:find("Ember", 1, true) and not line:find("loading", 1, true) and not line:find("ready", 1, true),
      "the command line showed: " .. line)
  end
  local seen = table.concat(t.statuslines, "\n")
  H.ok(seen:find("loading FakeLM-7M-Instruct 50% · loading weights", 1, true), "progress steps: " .. seen)
  H.eq("", t:messages(), ":messages")
end)

case("tui: a command as the daemon is killed by signal 9: one line that says so, no prompt, no key lost", function()
  local cmd = fake_cmd("--kill-on", "summarize")
  -- max_retries = 0: the request's error and the plugin giving up come at the same moment.
  local t = child("kill", "notes.txt", { cmd = cmd, restart = { max_retries = 0 } })
  running = t
  t:type(":Ember summarize\r")
  local line = H.wait(function()
    local l = t:cmdline()
    return l:find("killed by signal 9", 1, true) and l
  end, 10000, "the error on the command line")
  H.ok(line:find("summarize failed: the daemon was killed by signal 9", 1, true), "the command line: " .. line)
  H.ok(not t:screen_text():find("code 0", 1, true), "no made-up exit code")
  H.wait(function()
    return t:statusline():find("Ember: stopped", 1, true)
  end, 5000, "the statusline says it stopped")
  -- The very next keys are the user's: a prompt would have taken the first one.
  t:type("\27")
  t:type("ggIok ")
  t:type("\27")
  H.wait(function()
    return t:mode().mode == "n" and buffer_lines(t)[1]:sub(1, 3) == "ok "
  end, 5000, "the next keys typed into the buffer")
  H.eq(1, #vim.tbl_filter(function(l)
    return l:find("killed by signal 9", 1, true) ~= nil
  end, vim.split(t:messages(), "\n")), "one message in :messages")
  -- The line was cut to fit: the whole of it is in the log.
  local log = table.concat(H.read_lines(t:lua("return require('ember.log').path()")), "\n")
  H.ok(log:find("summarize failed: the daemon was killed by signal 9 before it answered · the daemon was killed by signal 9 (1 crash within 60 s); not restarting it", 1, true),
    "both things said, in one line, in the log")
end)

case("tui: no key is taken by default; <Tab> stays a tab; <Plug> mappings accept a word, a line, the rest", function()
  local cmd = fake_cmd("--complete-texts", "alpha beta\ngamma delta")
  local t = child("keys", "code.py", { cmd = cmd }, {
    "vim.keymap.set('i', '<C-e>', function() require('ember').complete() end)",
    "vim.keymap.set('i', '<C-f>', '<Plug>(ember-accept-word)')",
    "vim.keymap.set('i', '<C-b>', '<Plug>(ember-accept-line)')",
    "vim.keymap.set('i', '<C-l>', '<Plug>(ember-accept)')",
    -- A real tab character (the python ftplugin expands tabs to spaces).
    "vim.api.nvim_create_autocmd('FileType', { command = 'setlocal noexpandtab softtabstop=0' })",
  })
  running = t
  -- Neovim's own <Tab> (snippet jumps, vim/_defaults.lua) stays; Ember maps no key.
  local tab = t:call("nvim_call_function", "maparg", { "<Tab>", "i", false, true })
  H.ok(not tostring(tab.desc or ""):find("Ember", 1, true), "<Tab> is Ember's: " .. vim.inspect(tab))
  local ours = t:lua([[
    local list = {}
    for _, m in ipairs(vim.api.nvim_get_keymap("i")) do
      if (m.desc or ""):find("^Ember") and not m.lhs:find("<Plug>", 1, true) then table.insert(list, m.lhs) end
    end
    return list]])
  H.eq({}, ours, "insert-mode keys mapped by Ember")
  t:type("Gox = ")
  t:type("\5") -- <C-e>: ask
  t:wait_screen("x = alpha beta", 10000, "the ghost text")
  t:wait_screen("gamma delta", 2000, "its second line")
  t:type("\6") -- <C-f>: next word
  H.wait(function()
    return buffer_lines(t)[3] == "x = alpha"
  end, 5000, "the word inserted")
  t:wait_screen("x = alpha beta", 2000, "the rest still shown")
  t:type("\2") -- <C-b>: the rest of the line
  H.wait(function()
    return buffer_lines(t)[3] == "x = alpha beta"
  end, 5000, "the line inserted")
  t:wait_screen("gamma delta", 2000, "the next line still shown")
  t:type("\12") -- <C-l>: all of it
  H.wait(function()
    return buffer_lines(t)[4] == "gamma delta"
  end, 5000, "the rest inserted")
  t:type("\t!")
  H.wait(function()
    return buffer_lines(t)[4] == "gamma delta\t!"
  end, 5000, "<Tab> typed a tab, in " .. vim.inspect(buffer_lines(t)))
  t:type("\27")
end)

case("tui: typing the suggestion's next characters keeps the rest on screen before the daemon answers", function()
  -- The second request is answered only after a minute: what shows meanwhile is the client's.
  local cmd = fake_cmd("--complete-delays", "0,60", "--complete-texts", "print(value)")
  local t = child("through", "code.py", { cmd = cmd, complete = { auto = true, debounce_ms = 30 } })
  running = t
  t:type("Go")
  t:type("\5") -- nothing mapped: <C-e> in insert mode copies the character below (none here)
  t:lua("require('ember').complete()")
  t:wait_screen("print(value)", 10000, "the suggestion")
  t:type("pr")
  -- The statusline's column says the screen shows the keystrokes; the same screen has the rest.
  local s = H.wait(function()
    local rows = t:screen()
    return rows[#rows - 1]:find("col=3", 1, true) and rows
  end, 5000, "the screen after typing")
  H.eq("print(value)", s[3], "the typed characters and the rest of the suggestion")
  H.eq("pr", buffer_lines(t)[3], "the buffer has only what was typed")
  t:type("\27")
end)

case("tui: a Markdown file with auto on starts nothing; a Python file starts the daemon", function()
  local cmd, rec = fake_cmd()
  local t = child("prose", "notes.md", { cmd = cmd, complete = { auto = true, debounce_ms = 30 } })
  running = t
  t:type("GoMore prose, typed slowly.")
  t:type("\27")
  H.wait(function()
    return t:mode().mode == "n" and buffer_lines(t)[5] == "More prose, typed slowly."
  end, 5000, "the text typed")
  H.eq(false, t:lua("return require('ember.daemon').is_running()"), "no daemon for markdown")
  H.eq({}, H.record(rec), "the daemon never ran")
  H.eq("", t:statusline():match("col=%d+%s*(.-)$") or "?", "nothing in the statusline")
  t:type(":edit code.py\r")
  H.wait(function()
    return #received(rec, "models/load") == 1
  end, 10000, "models/load for the python file")
  H.eq(0, #received(rec, "complete"), "no completion asked")
end)

H.run()
