-- Failure paths and UI behaviour against tests/editors/fake_daemon.py (crashes, slow and stale
-- replies, errors). Run by tests/editors/test_nvim.py.
local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local H = dofile(root .. "/tests/harness.lua")
vim.cmd.runtime("plugin/ember.lua")

local python = assert(os.getenv("EMBER_TEST_PYTHON"))
local fake = assert(os.getenv("EMBER_TEST_FAKE"))
local tmp = assert(os.getenv("EMBER_TEST_TMP"))

local ember = require("ember")
local daemon = require("ember.daemon")
local complete = require("ember.complete")
local ui = require("ember.ui")
local n = 0

--- A fresh fake daemon command with its own record file; returns cmd, record path.
local function fake_cmd(...)
  n = n + 1
  local rec = ("%s/record-%d.jsonl"):format(tmp, n)
  return vim.list_extend({ python, fake, "--record", rec }, { ... }), rec
end

-- As a user who maps <Tab> and <C-]> (nothing is mapped by default: see the "keys:" case).
local function use_fake(opts, ...)
  local cmd, rec = fake_cmd(...)
  ember.setup(vim.tbl_deep_extend("force", {
    cmd = cmd,
    restart = { delay_ms = 20 },
    complete = { keymaps = { accept = "<Tab>", dismiss = "<C-]>" } },
  }, opts or {}))
  daemon.start()
  H.wait(function()
    return daemon.info() ~= nil
  end, 10000, "the fake daemon to answer initialize")
  return rec
end

local function received(rec, method)
  return vim.tbl_filter(function(e)
    return e.dir == "in" and e.msg.method == method
  end, H.record(rec))
end

local function sent(rec, pred)
  return vim.tbl_filter(function(e)
    return e.dir == "out" and pred(e.msg)
  end, H.record(rec))
end

local function float_done()
  return ui.last and ui.last.done and ui.last
end

-- Put a spy on extmarks so that a ghost text that was ever shown, even briefly, is known.
local ghost_ns = vim.api.nvim_create_namespace("ember_ghost")
local ghosts_shown = {}
local set_extmark = vim.api.nvim_buf_set_extmark
vim.api.nvim_buf_set_extmark = function(buf, ns, row, col, opts)
  if ns == ghost_ns and opts and opts.virt_text then
    table.insert(ghosts_shown, opts.virt_text[1][1])
  end
  return set_extmark(buf, ns, row, col, opts)
end

local function ghost_marks(buf)
  return vim.api.nvim_buf_get_extmarks(buf or 0, ghost_ns, 0, -1, { details = true })
end

---------------------------------------------------------------------------------------------

H.case("setup: invalid and unknown options are reported and defaults kept", function()
  local mark = H.mark()
  ember.setup({ complete = { auto = "yes", debounce_ms = -5 }, bogus = 1, window = { border = "single" } })
  local msg = H.note_matching(mark, "setup")
  H.ok(msg, "a warning about the options")
  H.ok(msg:find("complete.auto", 1, true), "names complete.auto: " .. msg)
  H.ok(msg:find("complete.debounce_ms", 1, true), "names complete.debounce_ms: " .. msg)
  H.ok(msg:find("bogus", 1, true), "names the unknown key: " .. msg)
  local o = require("ember.config").options
  H.eq(false, o.complete.auto, "complete.auto")
  H.eq(300, o.complete.debounce_ms, "complete.debounce_ms")
  H.eq("single", o.window.border, "a valid option next to invalid ones still applies")
  ember.setup({ cmd = fake_cmd() })
end)

H.case("command: :Ember completes its subcommands and languages", function()
  local subs = vim.fn.getcompletion("Ember ", "cmdline")
  for _, s in ipairs({ "summarize", "translate", "classify", "ask", "tokens", "complete", "status", "restart", "log" }) do
    H.ok(vim.tbl_contains(subs, s), "subcommand " .. s .. " in " .. vim.inspect(subs))
  end
  H.eq({ "tokens", "translate" }, vim.fn.getcompletion("Ember t", "cmdline"), "prefix t")
  H.ok(vim.tbl_contains(vim.fn.getcompletion("Ember translate Fr", "cmdline"), "French"), "language completion")
  local mark = H.mark()
  vim.cmd("Ember")
  H.ok(H.note_matching(mark, "subcommands: ask, classify, complete, log"), "bare :Ember lists the subcommands")
  vim.cmd("Ember frobnicate")
  H.ok(H.note_matching(mark, 'unknown subcommand "frobnicate"'), "an unknown subcommand is named")
end)

H.case("docs: every option, subcommand and highlight group is in doc/ember.txt", function()
  local doc = table.concat(H.read_lines(root .. "/doc/ember.txt"), "\n")
  local missing = {}
  local function walk(schema, prefix)
    for key, spec in pairs(schema) do
      local path = prefix .. key
      if spec.__leaf then
        if not doc:find(path, 1, true) then
          table.insert(missing, path)
        end
      else
        walk(spec, path .. ".")
      end
    end
  end
  walk(require("ember.config").schema, "")
  for name in pairs(require("ember.commands").subcommands) do
    if not doc:find("*:Ember-" .. name .. "*", 1, true) then
      table.insert(missing, ":Ember " .. name)
    end
  end
  for group in pairs(ui.hl) do
    if not doc:find(group, 1, true) then
      table.insert(missing, group)
    end
  end
  H.eq({}, missing, "undocumented")
  -- The help file builds its tags without duplicates or errors.
  local dir = tmp .. "/doc"
  vim.fn.mkdir(dir, "p")
  vim.fn.writefile(vim.fn.readfile(root .. "/doc/ember.txt"), dir .. "/ember.txt")
  vim.cmd("helptags " .. vim.fn.fnameescape(dir))
  local tags = H.read_lines(dir .. "/tags")
  H.ok(#tags > 40, "tags: " .. #tags)
end)

H.case("complete: the prefix window starts on a line that stays put while typing", function()
  local complete = require("ember.complete")
  local buf = vim.api.nvim_create_buf(false, true)
  local lines = {}
  for i = 1, 400 do
    lines[i] = string.format("line %03d of the file", i) -- 20 bytes + newline
  end
  vim.api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  local starts = {}
  for col = 0, 19 do -- typing along line 300
    local prefix = complete.context(buf, 300, col, 4000, 200)
    H.ok(#prefix <= 4000, "within max_prefix: " .. #prefix)
    H.ok(prefix:sub(-col - 1, -col - 1) == "\n" or col == 0, "ends at the cursor")
    H.eq("line", prefix:sub(1, 4), "starts at a line start")
    starts[prefix:sub(1, 8)] = true
  end
  H.eq(1, vim.tbl_count(starts), "one window start for the whole line: " .. vim.inspect(starts))
  local near_top = complete.context(buf, 3, 5, 4000, 200)
  H.eq("line 001", near_top:sub(1, 8), "the whole file while it fits")
  local prefix, suffix = complete.context(buf, 399, 4, 4000, 30)
  H.eq(" 399 of the file", suffix, "the suffix is cut at a line end")
  H.ok(#prefix > 4000 - complete.WINDOW_STEP, "at least max_prefix minus one step: " .. #prefix)
end)

H.case("daemon: initialize carries this Neovim's pid", function()
  local rec = use_fake()
  local init = received(rec, "initialize")
  H.eq(1, #init, "initialize requests")
  H.eq(vim.fn.getpid(), init[1].msg.params.process_id, "process_id")
  H.eq("number", type(init[1].msg.id), "request ids are numbers")
end)

H.case("daemon: a crashed daemon is restarted and works again", function()
  local flag = tmp .. "/crashed-once"
  local rec = use_fake({}, "--crash-once", flag, "--crash-after", "2")
  local first_pid = daemon.info().pid
  local mark = H.mark()
  H.buffer({ "one two three" })
  local seen = {}
  local au = vim.api.nvim_create_autocmd("User", { pattern = "EmberStatus", callback = function()
    table.insert(seen, require("ember").statusline({ tokens = false }))
  end })
  vim.cmd("Ember tokens") -- the 2nd request: the daemon dies on it
  H.wait(function()
    return H.note_matching(mark, "tokenize failed")
  end, 5000, "the lost request's error")
  H.ok(H.note_matching(mark, "tokenize failed: the daemon exited with code 3 before it answered"), vim.inspect(H.notes_since(mark)))
  H.ok(not H.note_matching(mark, "restarting"), "the restart is not a message")
  H.wait(function()
    return daemon.info() and daemon.info().pid ~= first_pid
  end, 10000, "a new daemon")
  vim.cmd("Ember tokens")
  H.wait(function()
    return H.note_matching(mark, "3 tokens")
  end, 5000, "the count from the new daemon")
  local pids = {}
  for _, e in ipairs(received(rec, "initialize")) do
    pids[e.pid] = true
  end
  H.eq(2, vim.tbl_count(pids), "processes that got initialize")
  vim.api.nvim_del_autocmd(au)
  H.ok(vim.tbl_contains(seen, "Ember: restarting · the daemon exited with code 3; restarting (1 of 3)"), "statusline: " .. vim.inspect(seen))
end)

H.case("daemon: gives up after max_retries crashes in a row", function()
  local mark = H.mark()
  local cmd, rec = fake_cmd("--crash-after", "1")
  ember.setup({ cmd = cmd, restart = { max_retries = 2, delay_ms = 10 } })
  daemon.start()
  H.wait(function()
    return daemon.status() == "failed"
  end, 10000, "the client to give up")
  H.ok(H.note_matching(mark, "exited with code 3 %(3 crashes"), "says it gave up: " .. vim.inspect(H.notes_since(mark)))
  H.eq("Ember: stopped (:Ember restart)", ember.statusline(), "the statusline says so")
  local pids = {}
  for _, e in ipairs(received(rec, "initialize")) do
    pids[e.pid] = true
  end
  H.eq(3, vim.tbl_count(pids), "the first start and two restarts")
  local mark2 = H.mark()
  H.buffer({ "text" })
  vim.cmd("Ember tokens")
  H.ok(H.note_matching(mark2, ":Ember restart"), "a request points to :Ember restart")
  H.eq(3, vim.tbl_count(pids), "no new process for that request")
  ember.setup({ cmd = fake_cmd() })
end)

H.case("daemon: setup() with another cmd stops the old daemon and starts the new one", function()
  local rec_a = use_fake()
  local cmd_b, rec_b = fake_cmd()
  ember.setup({ cmd = cmd_b })
  H.wait(function()
    return #received(rec_b, "initialize") == 1
  end, 10000, "the new daemon's initialize")
  H.wait(function()
    return #received(rec_a, "exit") == 1
  end, 5000, "exit to the old daemon")
  H.eq(1, #received(rec_a, "shutdown"), "shutdown before exit")
end)

H.case("daemon: stderr goes to the log file and :Ember log opens it", function()
  use_fake({}, "--stderr", "hello from the fake's stderr")
  local path = require("ember.log").path()
  H.wait(function()
    return table.concat(H.read_lines(path), "\n"):find("hello from the fake's stderr", 1, true)
  end, 5000, "the stderr line in " .. path)
  vim.cmd("Ember log")
  H.eq(vim.fn.resolve(path), vim.fn.resolve(vim.api.nvim_buf_get_name(0)), "the open file")
  vim.cmd("bwipe!")
end)

H.case("errors: a daemon error is shown as its message", function()
  use_fake({}, "--error", "summarize=-32002:Input is too long for the model")
  local mark = H.mark()
  H.buffer({ "Some text to summarize." })
  vim.cmd("Ember summarize")
  local f = H.wait(float_done, 5000, "the summary window to finish")
  H.wait(function()
    return H.note_matching(mark, "summarize failed")
  end, 5000, "the error notification")
  local msg, level = H.note_matching(mark, "summarize failed")
  H.eq("Ember: summarize failed: Input is too long for the model (5000 tokens; the model takes at most 2048)", msg, "message")
  H.eq(vim.log.levels.ERROR, level, "level")
  H.ok(f.failed and f.text:find("Input is too long", 1, true), "the window shows the error too")
end)

H.case("progress: model loading shows in the statusline by the model's label, never as a message", function()
  use_fake({}, "--progress")
  local events, lines = {}, {}
  local au = vim.api.nvim_create_autocmd("User", {
    pattern = "EmberProgress",
    callback = function(ev)
      table.insert(events, ev.data)
      table.insert(lines, ember.statusline({ tokens = false }))
    end,
  })
  local echoes = {}
  local echo = vim.api.nvim_echo
  vim.api.nvim_echo = function(chunks, ...)
    table.insert(echoes, chunks[1][1])
    return echo(chunks, ...)
  end
  local mark = H.mark()
  H.buffer({ "a b" })
  vim.cmd("Ember tokens")
  H.wait(function()
    return #events == 4
  end, 5000, "the ready step")
  H.wait(function()
    return H.note_matching(mark, "2 tokens")
  end, 5000, "the count")
  H.sleep(2 * require("ember.util").COALESCE_MS)
  vim.api.nvim_echo = echo
  vim.api.nvim_del_autocmd(au)
  H.eq({ "load", "load", "load", "ready" }, vim.tbl_map(function(e)
    return e.phase
  end, events), "User EmberProgress events")
  H.eq("Ember: loading FakeLM-7M-Instruct 50% · loading weights", lines[2], "the statusline while loading")
  H.eq("Ember: FakeLM-7M-Instruct", lines[4], "the statusline once ready")
  H.eq({}, echoes, "nothing echoed")
  H.eq({ "Ember: 2 tokens in the buffer (FakeLM-7M-Instruct)" }, H.notes_since(mark), "the only message")
end)

H.case("summarize: streams into a window; r replaces the paragraph", function()
  local rec = use_fake({}, "--slow", "0.2")
  local buf = H.buffer({ "Title", "", "alpha beta gamma delta epsilon zeta", "eta theta", "", "after" })
  vim.api.nvim_win_set_cursor(0, { 3, 4 })
  vim.cmd("Ember summarize")
  local f = H.wait(float_done, 5000, "the summary")
  H.eq("Summary: alpha beta gamma delta epsilon", f.text, "text")
  local req = received(rec, "summarize")[1].msg
  H.eq("alpha beta gamma delta epsilon zeta\neta theta", req.params.text, "the paragraph was sent")
  H.eq(true, req.params.stream, "streamed")
  H.eq(6, #sent(rec, function(m)
    return m.method == "ember/stream"
  end), "deltas")
  H.eq(f.win, vim.api.nvim_get_current_win(), "the window has the focus")
  H.feed("r")
  H.wait(function()
    return not f:is_open()
  end, 2000, "the window to close")
  H.eq({ "Title", "", "Summary: alpha beta gamma delta epsilon", "", "after" }, H.lines(buf), "buffer")
end)

H.case("summarize: p inserts below the selection; q while streaming cancels", function()
  use_fake({}, "--slow", "0.1")
  local buf = H.buffer({ "one two three", "four five six", "seven" })
  vim.cmd("normal! Vj")
  vim.cmd("normal! \27")
  vim.cmd("'<,'>Ember summarize")
  local f = H.wait(float_done, 5000, "the summary")
  H.feed("p")
  H.wait(function()
    return not f:is_open()
  end, 2000, "the window to close")
  H.eq({ "one two three", "four five six", "", "Summary: one two three four five", "seven" }, H.lines(buf), "buffer")

  local rec2 = use_fake({}, "--slow", "5")
  vim.cmd("1Ember summarize")
  local f2 = ui.last
  H.wait(function()
    return #received(rec2, "summarize") == 1
  end, 5000, "the request")
  H.feed("q")
  H.wait(function()
    return not f2:is_open()
  end, 2000, "the window to close")
  H.wait(function()
    return #received(rec2, "$/cancelRequest") == 1
  end, 3000, "$/cancelRequest")
  H.eq(received(rec2, "summarize")[1].msg.id, received(rec2, "$/cancelRequest")[1].msg.params.id, "cancelled id")
end)

H.case("translate: prompts with the default language and replaces the selection, undoably", function()
  local rec = use_fake({ translate = { target = "Italian" } })
  local buf = H.buffer({ "keep", "Hello world", "keep too" })
  local asked = H.answering_input("German", function()
    vim.cmd("2Ember translate")
  end)
  H.eq("Italian", asked.default, "default of the prompt")
  H.wait(function()
    return H.lines(buf)[2] ~= "Hello world"
  end, 5000, "the replacement")
  H.eq({ "keep", "[German] Hello world", "keep too" }, H.lines(buf), "buffer")
  H.eq("German", received(rec, "translate")[1].msg.params.target, "target")
  H.ok(not ui.last:is_open(), "the preview closed")
  vim.cmd("undo")
  H.eq({ "keep", "Hello world", "keep too" }, H.lines(buf), "one undo restores it")
end)

H.case("translate: a characterwise selection, inserted below with action=insert", function()
  use_fake({ translate = { action = "insert" } })
  local buf = H.buffer({ "Say bonjour à tous now", "end" })
  vim.api.nvim_win_set_cursor(0, { 1, 4 })
  vim.cmd("normal! vee") -- "bonjour à"
  vim.cmd("normal! \27")
  vim.cmd("'<,'>Ember translate English")
  H.wait(function()
    return #H.lines(buf) == 4
  end, 5000, "the insertion")
  H.eq({ "Say bonjour à tous now", "", "[English] bonjour à", "end" }, H.lines(buf), "buffer")
end)

H.case("translate: text edited while translating is not overwritten", function()
  use_fake({}, "--slow", "0.5")
  local buf = H.buffer({ "Hello world", "next" })
  local mark = H.mark()
  vim.cmd("1Ember translate German")
  vim.api.nvim_buf_set_lines(buf, 0, 1, false, { "Hello edited world" })
  local f = H.wait(float_done, 5000, "the translation")
  H.ok(H.note_matching(mark, "the text changed since the request"), vim.inspect(H.notes_since(mark)))
  H.eq({ "Hello edited world", "next" }, H.lines(buf), "buffer untouched")
  H.ok(f:is_open(), "the result stays in its window")
  f:close()
end)

H.case("classify: labels from the arguments; top label and all scores shown", function()
  local rec = use_fake()
  H.buffer({ "What a lovely day." })
  vim.cmd("Ember classify happy sad angry")
  local f = H.wait(float_done, 5000, "the scores")
  H.eq({ "happy", "sad", "angry" }, received(rec, "classify")[1].msg.params.labels, "labels sent")
  local lines = vim.split(f.text, "\n")
  H.eq("happy", lines[1], "top label first")
  H.ok(lines[3]:find("^happy%s+70%.0%%"), lines[3])
  H.ok(lines[4]:find("^sad%s+15%.0%%") or lines[4]:find("^angry%s+15%.0%%"), lines[4])
  H.eq(5, #lines, "every label listed")
  vim.cmd("Ember classify")
  H.wait(function()
    return #received(rec, "classify") == 2
  end)
  H.eq(nil, received(rec, "classify")[2].msg.params.labels, "no labels: the daemon's default")
  ember.setup({ cmd = require("ember.config").options.cmd, classify = { labels = { "spam", "ham" } } })
  vim.cmd("Ember classify")
  H.wait(function()
    return #received(rec, "classify") == 3
  end)
  H.eq({ "spam", "ham" }, received(rec, "classify")[3].msg.params.labels, "labels from the options")
  local mark = H.mark()
  vim.cmd("Ember classify lonely")
  H.ok(H.note_matching(mark, "at least two labels"), "one label is refused")
  ember.setup({ cmd = require("ember.config").options.cmd })
end)

H.case("classify: calibrate is sent only when the user set it", function()
  local rec = use_fake()
  H.buffer({ "What a lovely day." })
  local function params(n)
    H.wait(function()
      return #received(rec, "classify") == n
    end, 5000, "classify request " .. n)
    return received(rec, "classify")[n].msg.params
  end
  vim.cmd("Ember classify")
  local first = params(1)
  H.eq("What a lovely day.", first.text, "the text sent")
  H.eq(nil, first.calibrate, "no calibrate by default: the daemon decides")
  ember.setup({ cmd = require("ember.config").options.cmd, classify = { calibrate = false } })
  vim.cmd("Ember classify")
  H.eq(false, params(2).calibrate, "calibrate = false is sent")
  ember.setup({ cmd = require("ember.config").options.cmd, classify = { calibrate = true } })
  vim.cmd("Ember classify")
  H.eq(true, params(3).calibrate, "calibrate = true is sent")
  ember.setup({ cmd = require("ember.config").options.cmd })
end)

H.case("tokens: :Ember tokens and the statusline", function()
  use_fake({ tokens = { debounce_ms = 20 } })
  local mark = H.mark()
  H.buffer({ "one two", "three four five" })
  vim.cmd("Ember tokens")
  H.wait(function()
    return H.note_matching(mark, "5 tokens in the buffer %(FakeLM%-7M%-Instruct%)")
  end, 5000, "the buffer count")
  vim.cmd("2Ember tokens")
  H.wait(function()
    return H.note_matching(mark, "3 tokens in the selection")
  end, 5000, "the selection count")
  H.eq("", ember.statusline(), "nothing before the first count")
  H.wait(function()
    return ember.statusline() == "FakeLM-7M-Instruct · 5 tok"
  end, 5000, "the statusline count")
  H.feed("Gosix seven<Esc>")
  H.wait(function()
    return ember.statusline() == "FakeLM-7M-Instruct · 7 tok"
  end, 5000, "the updated count")
end)

H.case("complete: manual request shows ghost text; Tab accepts it", function()
  local rec = use_fake({}, "--complete-texts", "a + b\n    # done")
  local buf = H.buffer({ "def add(a, b):", "    return ", "print(add(1, 2))" })
  H.feed("2GA")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  vim.cmd("Ember complete")
  H.wait(complete.visible, 5000, "the suggestion")
  local p = received(rec, "complete")[1].msg.params
  H.eq("def add(a, b):\n    return ", p.prefix, "prefix")
  H.eq("\nprint(add(1, 2))", p.suffix, "suffix")
  local marks = ghost_marks(buf)
  H.eq(1, #marks, "one ghost extmark")
  H.eq("a + b", marks[1][4].virt_text[1][1], "inline part")
  H.eq("    # done", marks[1][4].virt_lines[1][1][1], "the line below")
  H.feed("<Tab>")
  H.wait(function()
    return not complete.visible() and H.lines(buf)[2] ~= "    return "
  end, 2000, "the insertion")
  H.eq({ "def add(a, b):", "    return a + b", "    # done", "print(add(1, 2))" }, H.lines(buf), "buffer")
  H.eq({ 3, 10 }, vim.api.nvim_win_get_cursor(0), "cursor after the inserted text")
  H.eq(0, #ghost_marks(buf), "no ghost left")
  H.feed("<Esc>")
end)

H.case("complete: Tab without a suggestion inserts a Tab", function()
  use_fake()
  local buf = H.buffer({ "x" })
  H.feed("A<Tab>y<Esc>")
  H.wait(function()
    return H.lines(buf)[1] == "x\ty"
  end, 2000, "a plain tab: " .. vim.inspect(H.lines(buf)))
end)

H.case("complete: typing and leaving insert mode dismiss the suggestion", function()
  use_fake({}, "--complete-texts", "GHOST")
  local buf = H.buffer({ "abc" })
  H.feed("A")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  vim.cmd("Ember complete")
  H.wait(complete.visible, 5000, "the suggestion")
  H.feed("d")
  H.wait(function()
    return #ghost_marks(buf) == 0
  end, 2000, "typing to dismiss it")
  vim.cmd("Ember complete")
  H.wait(complete.visible, 5000, "the second suggestion")
  H.feed("<Esc>")
  H.wait(function()
    return #ghost_marks(buf) == 0 and vim.api.nvim_get_mode().mode == "n"
  end, 2000, "<Esc> to dismiss it")
  H.eq({ "abcd" }, H.lines(buf), "nothing inserted")
end)

H.case("complete: auto request after typing; a newer keystroke supersedes the older request", function()
  -- The 1st completion takes 3 s and the fake answers it even though the 2nd superseded it: the
  -- client must never show the stale "STALE". It sends no $/cancelRequest: the 2nd request
  -- carries the same `supersede` key, so the daemon replaces the 1st (or answers from it).
  local rec = use_fake({ complete = { auto = true, debounce_ms = 30 } },
    "--complete-delays", "3,0", "--complete-texts", "STALE|FRESH", "--ignore-cancel")
  ghosts_shown = {}
  local buf = H.buffer({ "" })
  H.feed("ia")
  H.wait(function()
    return #received(rec, "complete") == 1
  end, 5000, "the first automatic request")
  local first = received(rec, "complete")[1].msg
  H.eq("a", first.params.prefix, "prefix of the first request")
  H.feed("b")
  H.wait(complete.visible, 5000, "the second suggestion")
  H.eq("FRESH", complete.suggestion(), "the newer reply is shown")
  H.eq(0, #received(rec, "$/cancelRequest"), "no $/cancelRequest")
  local second = received(rec, "complete")[2].msg
  H.eq(first.params.supersede, second.params.supersede, "the same supersede key")
  -- Wait for the stale reply to be sent, then for a later reply: the stale one was read first.
  H.wait(function()
    return #sent(rec, function(m)
      return m.id == first.id and m.result
    end) == 1
  end, 5000, "the stale reply")
  local done = false
  daemon.request("daemon/status", nil, function()
    done = true
  end)
  H.wait(function()
    return done
  end, 5000, "a later reply")
  H.eq("FRESH", complete.suggestion(), "still the newer suggestion")
  H.eq({ "FRESH" }, ghosts_shown, "ghost texts ever shown")
  H.feed("<Tab>")
  H.wait(function()
    return H.lines(buf)[1] == "abFRESH"
  end, 2000, "the accepted text")
  H.feed("<Esc>")
  ember.setup({ cmd = fake_cmd(), complete = { auto = false } })
end)

H.case("complete: a cancelled request answered with -32800 shows nothing and no error", function()
  local rec = use_fake({ complete = { auto = true, debounce_ms = 30 } }, "--complete-delays", "3,0", "--complete-texts", "OLD|NEW")
  local mark = H.mark()
  local buf = H.buffer({ "" })
  H.feed("ix")
  H.wait(function()
    return #received(rec, "complete") == 1
  end, 5000, "the first request")
  H.feed("y")
  H.wait(function()
    return #sent(rec, function(m)
      return m.error and m.error.code == -32800
    end) == 1
  end, 5000, "the -32800 reply")
  H.wait(complete.visible, 5000, "the newer suggestion")
  H.eq("NEW", complete.suggestion(), "suggestion")
  H.eq({}, H.notes_since(mark, vim.log.levels.ERROR), "no error shown")
  H.eq(1, #ghost_marks(buf), "one ghost")
  H.feed("<Esc>")
  ember.setup({ cmd = fake_cmd(), complete = { auto = false } })
end)

--- The completion/feedback notifications the fake received: { completion_id, event, accepted_chars }.
local function feedbacks(rec)
  return vim.tbl_map(function(e)
    return e.msg.params
  end, received(rec, "completion/feedback"))
end

local function invalid(rec)
  return vim.tbl_filter(function(e)
    return e.dir == "invalid"
  end, H.record(rec))
end

--- Every chunk of every context/add the fake received, in order.
local function chunks(rec)
  local all = {}
  for _, e in ipairs(received(rec, "context/add")) do
    vim.list_extend(all, e.msg.params.chunks)
  end
  return all
end

local function write_file(name, lines)
  vim.fn.mkdir(vim.fn.fnamemodify(tmp .. "/" .. name, ":h"), "p")
  vim.fn.writefile(lines, tmp .. "/" .. name)
  return tmp .. "/" .. name
end

--- Insert mode at the end of line `row` of a fresh buffer, then a manual completion shown.
local function suggestion_at_end(lines, row)
  local buf = H.buffer(lines)
  H.feed(row .. "GA")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  vim.cmd("Ember complete")
  H.wait(complete.visible, 5000, "the suggestion")
  return buf
end

H.case("complete: requests carry the filetype as language and the path from the working directory", function()
  local rec = use_fake()
  vim.cmd("cd " .. vim.fn.fnameescape(tmp))
  local inside = write_file("pkg/mod.py", { "def f():", "    return " })
  vim.cmd("edit! " .. vim.fn.fnameescape(inside))
  H.eq("python", vim.bo.filetype, "filetype")
  H.feed("2GA")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  vim.cmd("Ember complete")
  H.wait(function()
    return #received(rec, "complete") == 1
  end, 5000, "the request")
  local p = received(rec, "complete")[1].msg.params
  H.eq("python", p.language, "language")
  H.eq("pkg/mod.py", p.path, "path inside the working directory")
  H.eq(vim.uri_from_bufnr(0), p.supersede, "supersede is still the URI")
  H.feed("<Esc>")
  -- A file outside the working directory: its absolute path.
  local outside = vim.fn.tempname() .. ".lua"
  vim.fn.writefile({ "local x = " }, outside)
  vim.cmd("edit! " .. vim.fn.fnameescape(outside))
  H.feed("A")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  vim.cmd("Ember complete")
  H.wait(function()
    return #received(rec, "complete") == 2
  end, 5000, "the second request")
  p = received(rec, "complete")[2].msg.params
  H.eq("lua", p.language, "language")
  H.eq(vim.fs.normalize(vim.fn.fnamemodify(outside, ":p")), p.path, "absolute path outside")
  H.feed("<Esc>")
  -- A buffer without a name or filetype: neither is sent (the daemon takes none as absent).
  H.buffer({ "x = " })
  H.feed("A")
  vim.cmd("Ember complete")
  H.wait(function()
    return #received(rec, "complete") == 3
  end, 5000, "the third request")
  p = received(rec, "complete")[3].msg.params
  H.eq(nil, p.language, "no language")
  H.eq(nil, p.path, "no path")
  H.feed("<Esc>")
  H.eq({}, invalid(rec), "notifications the daemon would drop")
  H.eq({}, sent(rec, function(m)
    return m.error ~= nil
  end), "errors")
end)

H.case("context: files opened, saved, edited and yanks reach the daemon as context/add", function()
  local rec = use_fake({ context = { debounce_ms = 10, lines = 64, max_chars = 4096 } })
  vim.cmd("cd " .. vim.fn.fnameescape(tmp))
  local a_lines, b_lines = {}, {}
  for i = 1, 200 do
    a_lines[i] = ("alpha_%d = %d"):format(i, i)
    b_lines[i] = ("beta_%d = %d"):format(i, i)
  end
  b_lines[150] = string.rep("x", 100000) -- one huge line: the chunk stays bounded
  write_file("ctx/a.py", a_lines)
  write_file("ctx/b.py", b_lines)
  -- Nothing goes out before inline completion is in use (as in a fresh Neovim); it is gathered.
  local cst = require("ember.context")._state
  cst.used, cst.pending, cst.recent = false, {}, {}
  vim.cmd("edit! ctx/a.py")
  H.sleep(150)
  H.eq({}, chunks(rec), "no context before completion is used")
  vim.cmd("edit ctx/b.py")
  H.sleep(100)
  H.eq({}, chunks(rec), "still none")
  -- A completion in b.py sends a.py's chunk first, not b.py's own (b.py is the file at the cursor).
  H.feed("A")
  vim.cmd("Ember complete")
  H.wait(complete.visible, 5000, "the suggestion")
  H.feed("<Esc>")
  local got = chunks(rec)
  H.eq(1, #got, "one chunk: " .. vim.inspect(got))
  H.eq("ctx/a.py", got[1].path, "path")
  H.eq("open", got[1].kind, "kind")
  H.eq(table.concat(vim.list_slice(a_lines, 1, 64), "\n"), got[1].text, "the top 64 lines of a.py")
  -- The chunk was sent before the completion request.
  local order = vim.tbl_map(function(e)
    return e.msg.method
  end, vim.tbl_filter(function(e)
    return e.dir == "in" and (e.msg.method == "context/add" or e.msg.method == "complete")
  end, H.record(rec)))
  H.eq({ "context/add", "complete" }, order, "order")
  -- Edit b.py near line 150 and save: the chunk around the edit waits while b.py is current...
  vim.api.nvim_win_set_cursor(0, { 120, 0 })
  H.feed("Onew_line = 1<Esc>")
  H.wait(function()
    return H.lines()[120] == "new_line = 1"
  end, 2000, "the edit")
  vim.cmd("write")
  H.sleep(100)
  H.eq(1, #chunks(rec), "the saved file's chunk waits while it is current")
  -- ...and goes out once the user is in another file (with b.py's own open chunk, held too).
  vim.cmd("edit ctx/a.py")
  local function of_kind(kind)
    return vim.tbl_filter(function(c)
      return c.kind == kind
    end, chunks(rec))
  end
  H.wait(function()
    return #of_kind("save") == 1
  end, 2000, "the save chunk")
  local save = of_kind("save")[1]
  H.eq("ctx/b.py", save.path, "path")
  H.ok(save.text:find("new_line = 1", 1, true), "the saved chunk has the edit")
  H.ok(vim.fn.strchars(save.text) <= 4096, "bounded: " .. vim.fn.strchars(save.text))
  H.eq({ "ctx/a.py", "ctx/b.py" }, vim.tbl_map(function(c)
    return c.path
  end, of_kind("open")), "files opened")
  vim.api.nvim_win_set_cursor(0, { 180, 0 })
  H.feed("ccchanged_180 = 0<Esc>")
  H.wait(function()
    return H.lines()[180] == "changed_180 = 0"
  end, 2000, "the edit of a.py")
  vim.cmd("edit ctx/b.py")
  H.wait(function()
    return #vim.tbl_filter(function(c)
      return c.kind == "edit"
    end, chunks(rec)) == 1
  end, 2000, "the edit chunk")
  local edit = vim.tbl_filter(function(c)
    return c.kind == "edit"
  end, chunks(rec))[1]
  H.eq("ctx/a.py", edit.path, "edit path")
  H.ok(edit.text:find("changed_180 = 0", 1, true), "the edit chunk has the edit")
  -- A yank goes at once, from any buffer.
  vim.api.nvim_win_set_cursor(0, { 10, 0 })
  H.feed("3yy")
  H.wait(function()
    return #vim.tbl_filter(function(c)
      return c.kind == "yank"
    end, chunks(rec)) == 1
  end, 2000, "the yank chunk")
  local yank = vim.tbl_filter(function(c)
    return c.kind == "yank"
  end, chunks(rec))[1]
  H.eq("beta_10 = 10\nbeta_11 = 11\nbeta_12 = 12", yank.text, "yanked text")
  H.eq("ctx/b.py", yank.path, "yank path")
  -- The same text again is not resent.
  local before = #chunks(rec)
  H.feed("3yy")
  H.sleep(100)
  H.eq(before, #chunks(rec), "a repeated yank is not resent")
  H.eq({}, invalid(rec), "notifications the daemon would drop")
  -- Switched off: nothing more is sent.
  ember.setup({ cmd = daemon._state.cmd, restart = { delay_ms = 20 }, context = { enabled = false, debounce_ms = 0 } })
  before = #chunks(rec)
  vim.api.nvim_win_set_cursor(0, { 30, 0 })
  H.feed("2yy")
  vim.cmd("edit ctx/a.py")
  H.sleep(100)
  local done = false
  daemon.request("daemon/status", nil, function()
    done = true
  end)
  H.wait(function()
    return done
  end, 5000, "a later reply")
  H.eq(before, #chunks(rec), "no context/add with context.enabled = false")
  vim.cmd("silent! %bwipeout!")
  ember.setup({ cmd = fake_cmd() })
end)

H.case("feedback: shown, accepted, partial and dismissed name the completion_id", function()
  local rec = use_fake({ complete = { keymaps = { accept_word = "<M-w>" } } }, "--complete-texts", "é + b|GHOST|word one")
  -- Shown, then accepted whole: the characters accepted are counted as characters, not bytes.
  suggestion_at_end({ "x = " }, 1)
  H.wait(function()
    return #feedbacks(rec) == 1
  end, 2000, "the shown report")
  H.eq({ completion_id = "fake-1", event = "shown" }, feedbacks(rec)[1], "shown")
  H.feed("<Tab>")
  H.wait(function()
    return #feedbacks(rec) == 2
  end, 2000, "the accepted report")
  H.eq({ completion_id = "fake-1", event = "accepted", accepted_chars = 5 }, feedbacks(rec)[2], "accepted")
  H.feed("<Esc>")
  -- Dismissed with <C-]>.
  suggestion_at_end({ "abc" }, 1)
  H.feed("<C-]>")
  H.wait(function()
    return #feedbacks(rec) == 4
  end, 2000, "the dismissed report")
  H.eq({ completion_id = "fake-2", event = "shown" }, feedbacks(rec)[3], "shown")
  H.eq({ completion_id = "fake-2", event = "dismissed" }, feedbacks(rec)[4], "dismissed")
  H.feed("<Esc>")
  -- A word accepted, then the rest dismissed by leaving insert mode.
  suggestion_at_end({ "y = " }, 1)
  H.feed("<M-w>")
  H.wait(function()
    return #feedbacks(rec) == 6
  end, 2000, "the partial report")
  H.eq({ completion_id = "fake-3", event = "partial", accepted_chars = 4 }, feedbacks(rec)[6], "partial")
  H.feed("<Esc>")
  H.wait(function()
    return #feedbacks(rec) == 7
  end, 2000, "the report when it is left")
  H.eq({ completion_id = "fake-3", event = "partial", accepted_chars = 4 }, feedbacks(rec)[7], "the rest left")
  H.eq({ "y = word" }, H.lines(), "buffer")
  H.eq({}, invalid(rec), "notifications the daemon would drop")
end)

H.case("complete: accept-word and accept-line insert part of the suggestion and keep the rest", function()
  local rec = use_fake({ complete = { keymaps = { accept_word = "<M-w>", accept_line = "<M-l>" } } },
    "--complete-texts", "total = sum(values)\n    return total")
  local buf = suggestion_at_end({ "def f(values):", "    " }, 2)
  H.feed("<M-w>")
  H.wait(function()
    return H.lines(buf)[2] == "    total"
  end, 2000, "the first word")
  H.eq(" = sum(values)\n    return total", complete.suggestion(), "the rest is still shown")
  H.eq(1, #ghost_marks(buf), "one ghost")
  H.eq(" = sum(values)", ghost_marks(buf)[1][4].virt_text[1][1], "inline rest")
  H.feed("<M-w>")
  H.wait(function()
    return H.lines(buf)[2] == "    total ="
  end, 2000, "the second word (punctuation)")
  -- The <Plug> mapping does the same as the key.
  H.feed("<Plug>(ember-accept-line)")
  H.wait(function()
    return H.lines(buf)[2] == "    total = sum(values)"
  end, 2000, "the line")
  H.eq("\n    return total", complete.suggestion(), "the next line is left")
  H.eq({ 2, #"    total = sum(values)" }, vim.api.nvim_win_get_cursor(0), "cursor at the end of the line")
  H.feed("<M-l>")
  H.wait(function()
    return #H.lines(buf) == 3
  end, 2000, "the next line")
  H.eq({ "def f(values):", "    total = sum(values)", "    return total" }, H.lines(buf), "buffer")
  H.eq(false, complete.visible(), "nothing left")
  H.wait(function()
    return #feedbacks(rec) == 5
  end, 2000, "the feedback")
  local events = vim.tbl_map(function(f)
    return f.event .. ":" .. tostring(f.accepted_chars)
  end, feedbacks(rec))
  H.eq({ "shown:nil", "partial:5", "partial:2", "partial:12", "accepted:36" }, events, "feedback")
  -- Without a suggestion the keys are themselves.
  H.feed("<Esc>")
  H.eq(false, complete.accept_word(), "accept_word without a suggestion")
end)

H.case("complete: typing the suggestion's next characters keeps the rest on screen", function()
  local rec = use_fake({}, "--complete-texts", "hello_world()|other")
  local buf = suggestion_at_end({ "x = " }, 1)
  ghosts_shown = {}
  for i, ch in ipairs({ "h", "e", "l" }) do
    H.feed(ch)
    H.wait(function()
      return H.lines(buf)[1] == "x = " .. ("hel"):sub(1, i)
    end, 2000, "the keystroke")
    -- At once, in the same tick as the keystroke: no gap without ghost text.
    H.eq(("hello_world()"):sub(i + 1), complete.suggestion(), "the rest after " .. i)
    H.eq(1, #ghost_marks(buf), "one ghost")
  end
  H.eq({ "lo_world()" }, { ghosts_shown[#ghosts_shown] }, "the last ghost drawn")
  -- A character that differs: the suggestion goes; three characters of it were used.
  H.feed("X")
  H.wait(function()
    return #ghost_marks(buf) == 0
  end, 2000, "the ghost to go")
  H.wait(function()
    return #feedbacks(rec) == 2
  end, 2000, "the feedback")
  H.eq({ completion_id = "fake-1", event = "partial", accepted_chars = 3 }, feedbacks(rec)[2], "partial by typing")
  H.feed("<Esc>")
end)

H.case("complete: typed through with auto on, the daemon's answer continues the same suggestion", function()
  local rec = use_fake({ complete = { auto = true, debounce_ms = 20 } }, "--type-through", "--complete-texts", "print(value)")
  local buf = H.buffer({ "" })
  H.feed("iy")
  H.wait(complete.visible, 5000, "the first suggestion")
  H.eq("print(value)", complete.suggestion(), "suggestion")
  H.feed("pr")
  H.wait(function()
    return H.lines(buf)[1] == "ypr"
  end, 2000, "the keystrokes")
  H.eq("int(value)", complete.suggestion(), "the rest is shown at once")
  H.wait(function()
    return #received(rec, "complete") >= 2
  end, 5000, "the request after typing")
  local last = sent(rec, function(m)
    return m.result and m.result.usage and m.result.usage.typed_through
  end)
  H.wait(function()
    last = sent(rec, function(m)
      return m.result and m.result.usage and m.result.usage.typed_through
    end)
    return #last >= 1
  end, 5000, "the typed-through answer")
  H.sleep(50)
  H.eq("int(value)", complete.suggestion(), "the answer continues it")
  H.feed("<Tab>")
  H.wait(function()
    return H.lines(buf)[1] == "yprint(value)"
  end, 2000, "the accepted text")
  H.wait(function()
    return #feedbacks(rec) == 2
  end, 2000, "the feedback")
  local events = vim.tbl_map(function(f)
    return f.completion_id .. ":" .. f.event
  end, feedbacks(rec))
  H.eq({ "fake-1:shown", "fake-1:accepted" }, events, "one completion, shown once, accepted")
  H.eq(12, feedbacks(rec)[2].accepted_chars, "all its characters (typed ones too)")
  H.feed("<Esc>")
  ember.setup({ cmd = fake_cmd(), complete = { auto = false } })
end)

H.case("keys: no insert-mode key is mapped by default; default_keymaps opts in; <Plug> mappings exist", function()
  local cmd = fake_cmd()
  local function ours()
    local list = {}
    for _, m in ipairs(vim.api.nvim_get_keymap("i")) do
      if (m.desc or ""):find("^Ember") and not m.lhs:find("<Plug>", 1, true) then
        table.insert(list, m.lhs)
      end
    end
    table.sort(list)
    return list
  end
  ember.setup({ cmd = cmd })
  H.eq({}, ours(), "Ember's insert-mode keys after a plain setup()")
  H.eq("", vim.fn.maparg("<Tab>", "i"), "<Tab>")
  for _, plug in ipairs({ "(ember-accept)", "(ember-accept-word)", "(ember-accept-line)", "(ember-dismiss)" }) do
    H.ok(next(vim.fn.maparg("<Plug>" .. plug, "i", false, true)) ~= nil, "<Plug>" .. plug .. " exists")
  end
  for _, mode in ipairs({ "n", "x" }) do
    H.ok(next(vim.fn.maparg("<Plug>(ember-ask)", mode, false, true)) ~= nil, "<Plug>(ember-ask) exists in mode " .. mode)
  end
  ember.setup({ cmd = cmd, complete = { default_keymaps = true, keymaps = { accept_word = "<M-w>" } } })
  H.eq({ "<C-]>", "<M-Down>", "<M-l>", "<M-w>" }, ours(), "the default keys, one replaced")
  ember.setup({ cmd = cmd })
  H.eq({}, ours(), "setup() without them unmaps them again")
end)

H.case("complete: auto is off in markdown, text, help and gitcommit unless turned on per filetype", function()
  local config = require("ember.config")
  local rec = use_fake({ complete = { auto = true, debounce_ms = 20 } })
  local buf = H.buffer({ "" })
  local function on(ft)
    vim.bo[buf].filetype = ft
    return config.auto_enabled(buf)
  end
  local prose = { "markdown", "text", "help", "gitcommit" }
  for _, ft in ipairs(prose) do
    H.eq(false, on(ft), ft)
  end
  H.eq(true, on("python"), "python")
  H.eq(true, on(""), "no filetype")
  ember.setup({ cmd = config.options.cmd, complete = { auto = true, filetypes = { markdown = true, lua = false } } })
  H.eq(true, on("markdown"), "markdown turned on")
  H.eq(false, on("text"), "text still off")
  H.eq(false, on("lua"), "lua turned off")
  H.eq(true, on("python"), "python as before")
  ember.setup({ cmd = config.options.cmd, complete = { auto = true, filetypes = { "python" } } })
  H.eq(false, on("lua"), "a list: only those")
  vim.b[buf].ember_complete = false
  H.eq(false, on("python"), "vim.b.ember_complete decides for its buffer")
  vim.b[buf].ember_complete = nil
  -- Typed in: the markdown buffer asks nothing, the python one does (requests keep their order).
  ember.setup({ cmd = config.options.cmd, complete = { auto = true, debounce_ms = 20 } })
  vim.bo[buf].filetype = "markdown"
  H.feed("iSome prose here<Esc>")
  vim.bo[buf].filetype = "python"
  H.feed("A x = ")
  H.wait(function()
    return #received(rec, "complete") >= 1
  end, 5000, "the python buffer's request")
  H.feed("<Esc>")
  local reqs = received(rec, "complete")
  H.eq("python", reqs[1].msg.params.language, "the first request is the python one")
end)

H.case("warm: opening a file where auto applies starts the daemon and loads the model; others start nothing", function()
  vim.cmd("filetype on")
  H.buffer({})
  daemon.stop({ wait = true })
  local cmd, rec = fake_cmd()
  ember.setup({ cmd = cmd, complete = { auto = true } })
  H.tick()
  H.eq(false, daemon.is_running(), "setup() in an empty buffer starts nothing")
  local dir = tmp .. "/warm"
  vim.fn.mkdir(dir, "p")
  vim.fn.writefile({ "# Notes", "", "Some prose." }, dir .. "/notes.md")
  vim.fn.writefile({ "x = 1" }, dir .. "/code.py")
  vim.fn.writefile({ "y = 2" }, dir .. "/more.py")
  vim.cmd.edit({ bang = true, args = { dir .. "/notes.md" } })
  H.tick()
  H.eq("markdown", vim.bo.filetype, "filetype")
  H.eq(false, daemon.is_running(), "a markdown file starts nothing")
  vim.cmd.edit({ bang = true, args = { dir .. "/code.py" } })
  H.tick()
  H.eq(true, daemon.is_running(), "a python file starts the daemon at once")
  H.wait(function()
    return #received(rec, "models/load") == 1
  end, 5000, "models/load")
  H.eq({ model = "fake-model" }, received(rec, "models/load")[1].msg.params, "the completion model (tasks has complete)")
  vim.cmd.edit({ bang = true, args = { dir .. "/more.py" } })
  local done = false
  daemon.request("daemon/status", nil, function()
    done = true
  end)
  H.wait(function()
    return done
  end, 5000, "a later reply")
  H.eq(1, #received(rec, "models/load"), "loaded once per daemon")
  H.eq(0, #received(rec, "complete"), "no completion was asked for")
  -- auto off: nothing starts
  vim.cmd("silent! %bwipe!")
  daemon.stop({ wait = true })
  local cmd2, rec2 = fake_cmd()
  ember.setup({ cmd = cmd2, complete = { auto = false } })
  vim.cmd.edit({ bang = true, args = { dir .. "/code.py" } })
  H.tick()
  H.eq(false, daemon.is_running(), "auto off: opening a python file starts nothing")
  ember.setup({ cmd = cmd2, complete = { auto = true, warm = false } })
  vim.cmd.edit({ bang = true, args = { dir .. "/more.py" } })
  H.tick()
  H.eq(false, daemon.is_running(), "warm = false: nothing starts")
  H.eq({}, H.record(rec2), "the second daemon never ran")
  vim.cmd("silent! %bwipe!")
end)

H.case("insert: in Markdown a summary inserted below a paragraph is its own paragraph", function()
  use_fake()
  local lines = { "# Notes", "", "alpha beta gamma", "delta epsilon", "", "Next paragraph." }
  local buf = H.buffer(lines)
  vim.bo[buf].filetype = "markdown"
  vim.api.nvim_win_set_cursor(0, { 3, 0 })
  vim.cmd("Ember summarize")
  H.wait(float_done, 5000, "the summary")
  H.feed("p")
  H.wait(function()
    return #H.lines(buf) > #lines
  end, 2000, "the insertion")
  H.eq({ "# Notes", "", "alpha beta gamma", "delta epsilon", "", "Summary: alpha beta gamma delta epsilon", "", "Next paragraph." },
    H.lines(buf), "a paragraph of its own")
  -- A selection that ends inside a paragraph: the result goes after that paragraph, not into it.
  buf = H.buffer(lines)
  vim.bo[buf].filetype = "markdown"
  vim.cmd("3Ember summarize")
  H.wait(float_done, 5000, "the summary of line 3")
  H.feed("p")
  H.wait(function()
    return #H.lines(buf) > #lines
  end, 2000, "the insertion")
  H.eq({ "# Notes", "", "alpha beta gamma", "delta epsilon", "", "Summary: alpha beta gamma", "", "Next paragraph." },
    H.lines(buf), "after the paragraph's end")
end)

H.case("daemon: a daemon killed by signal 9 is reported as such, in one message", function()
  local rec = use_fake({}, "--kill-on", "summarize")
  local first = daemon.info().pid
  local mark = H.mark()
  H.buffer({ "Some text to summarize." })
  vim.cmd("Ember summarize")
  H.wait(function()
    return daemon.info() and daemon.info().pid ~= first
  end, 10000, "the restarted daemon")
  H.wait(function()
    return #H.notes_since(mark) > 0
  end, 2000, "the message")
  local notes = H.notes_since(mark)
  H.eq(1, #notes, "one message: " .. vim.inspect(notes))
  H.ok(notes[1]:find("summarize failed: the daemon was killed by signal 9 before it answered", 1, true), notes[1])
  H.eq("was killed by signal 9", daemon.client_state().last_exit.reason, "last_exit")
  H.ok(#received(rec, "initialize") >= 1, "record")
end)

H.case("messages: what the plugin says at one moment goes out as one notification", function()
  local util = require("ember.util")
  local mark = H.mark()
  util.error("first problem")
  util.warn("second problem")
  H.wait(function()
    return #H.notes_since(mark) > 0
  end, 2000, "the notification")
  H.sleep(3 * util.COALESCE_MS)
  H.eq({ "Ember: first problem\nsecond problem" }, H.notes_since(mark), "one notification")
  H.eq(vim.log.levels.ERROR, H.notes[mark + 1].level, "at the highest level")
end)

H.case("status: :Ember status shows the models", function()
  use_fake()
  vim.cmd("Ember status")
  local f = H.wait(float_done, 5000, "the status")
  H.ok(f.text:find("fake%-model"), f.text)
  H.ok(f.text:find("queue_depth: 0", 1, true), f.text)
end)

H.case("health: :checkhealth ember reports the daemon and its models", function()
  use_fake()
  vim.cmd("checkhealth ember")
  local text = table.concat(H.lines(), "\n")
  H.ok(text:find("the daemon answers: ember%-fake"), text)
  H.ok(text:find("loaded: FakeLM-7M-Instruct (fake-model)", 1, true), text)
  H.ok(not text:find("ERROR"), text)
  vim.cmd("tabclose")
end)

H.case("restart: :Ember restart starts a fresh daemon", function()
  local rec = use_fake()
  local pid = daemon.info().pid
  vim.cmd("Ember restart")
  H.wait(function()
    return daemon.info() and daemon.info().pid ~= pid
  end, 10000, "a new daemon")
  H.wait(function()
    return #received(rec, "exit") >= 1
  end, 5000, "the old one to get exit")
end)

H.case("exit: quitting Neovim sends shutdown and exit", function()
  -- The pytest side checks the record after Neovim has quit.
  H.data.exit_record = use_fake()
  H.data.exit_pid = daemon.info().pid
end)

H.run()
