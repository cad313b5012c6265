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

local function use_fake(opts, ...)
  local cmd, rec = fake_cmd(...)
  ember.setup(vim.tbl_deep_extend("force", { cmd = cmd, restart = { delay_ms = 20 } }, opts or {}))
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
  for _, s in ipairs({ "summarize", "translate", "classify", "tokens", "complete", "status", "restart", "log" }) do
    H.ok(vim.tbl_contains(subs, s), "subcommand " .. s .. " in " .. vim.inspect(subs))
  end
  H.eq({ "tokens", "translate" }, vim.fn.getcompletion("Ember t", "cmdline"), "prefix t")
  H.ok(vim.tbl_contains(vim.fn.getcompletion("Ember translate Fr", "cmdline"), "French"), "language completion")
  local mark = H.mark()
  vim.cmd("Ember")
  H.ok(H.note_matching(mark, "subcommands: classify, complete, log"), "bare :Ember lists the subcommands")
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
  vim.cmd("Ember tokens") -- the 2nd request: the daemon dies on it
  H.wait(function()
    return H.note_matching(mark, "restarting")
  end, 5000, "the restart notice")
  H.ok(H.note_matching(mark, "tokenize failed: the daemon exited"), "the lost request is reported")
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
end)

H.case("daemon: gives up after max_retries crashes in a row", function()
  local mark = H.mark()
  local cmd, rec = fake_cmd("--crash-after", "1")
  ember.setup({ cmd = cmd, restart = { max_retries = 2, delay_ms = 10 } })
  daemon.start()
  H.wait(function()
    return daemon.status() == "failed"
  end, 10000, "the client to give up")
  H.ok(H.note_matching(mark, "exited %(code 3%) 3 times"), "says it gave up: " .. vim.inspect(H.notes_since(mark)))
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

H.case("progress: model loading is shown", function()
  use_fake({}, "--progress")
  local events = {}
  vim.api.nvim_create_autocmd("User", {
    pattern = "EmberProgress",
    callback = function(ev)
      table.insert(events, ev.data)
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
    return H.note_matching(mark, "model fake%-model ready")
  end, 5000, "the ready notice")
  vim.api.nvim_echo = echo
  H.eq({ "load", "load", "load", "ready" }, vim.tbl_map(function(e)
    return e.phase
  end, events), "User EmberProgress events")
  H.ok(vim.tbl_contains(echoes, "Ember: loading fake-model 50%"), "percent echoed: " .. vim.inspect(echoes))
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
  local asked
  local input = vim.ui.input
  vim.ui.input = function(opts, cb)
    asked = opts.default
    cb("German")
  end
  vim.cmd("2Ember translate")
  vim.ui.input = input
  H.eq("Italian", asked, "default of the prompt")
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
    return H.note_matching(mark, "5 tokens in the buffer %(fake%-model%)")
  end, 5000, "the buffer count")
  vim.cmd("2Ember tokens")
  H.wait(function()
    return H.note_matching(mark, "3 tokens in the selection")
  end, 5000, "the selection count")
  H.eq("", ember.statusline(), "nothing before the first count")
  H.wait(function()
    return ember.statusline() == "fake-model · 5 tok"
  end, 5000, "the statusline count")
  H.feed("Gosix seven<Esc>")
  H.wait(function()
    return ember.statusline() == "fake-model · 7 tok"
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

H.case("complete: auto request after typing; a newer keystroke cancels the older request", function()
  -- The 1st completion takes 3 s and the fake answers it even though it is cancelled: the
  -- client must send $/cancelRequest and never show the stale "STALE".
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
  local cancels = received(rec, "$/cancelRequest")
  H.eq(1, #cancels, "one $/cancelRequest")
  H.eq(first.id, cancels[1].msg.params.id, "it names the first request")
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
  H.ok(text:find("loaded: fake%-model"), text)
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
