-- Every command against the real daemon (`ember serve`) on the real offline model (SmolLM2-135M).
-- Run by tests/editors/test_nvim.py, which also re-counts the recorded token counts with a
-- separate `ember serve` and checks that the daemon is gone after Neovim quits.
--
-- The model is small: tests check that each command does its job on a real buffer (text appears,
-- the selection is replaced, the label is a candidate, counts match), never what the text says.
local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
local H = dofile(root .. "/tests/harness.lua")
vim.cmd.runtime("plugin/ember.lua")

local ember_bin = assert(os.getenv("EMBER_TEST_EMBER"))
local ember = require("ember")
local daemon = require("ember.daemon")
local complete = require("ember.complete")
local text = require("ember.text")
local ui = require("ember.ui")

-- Generous: the first request loads the model, and the machine may be busy.
local GEN_MS = 120000

-- Every daemon runs behind a proxy that records the wire, so that test_nvim.py can check that each
-- method the plugin calls was answered by the real daemon (whose replies are checked against
-- wire.py: EMBER_CHECK_RESULTS).
local python, proxy_py = assert(os.getenv("EMBER_TEST_PYTHON")), assert(os.getenv("EMBER_TEST_PROXY"))
local base = {
  cmd = { python, proxy_py, assert(os.getenv("EMBER_TEST_WIRE")), ember_bin, "serve" },
  summarize = { max_tokens = 40 },
  translate = { max_tokens = 40 },
  complete = { max_tokens = 16, keymaps = { accept = "<Tab>" } }, -- as a user who maps <Tab>
  tokens = { debounce_ms = 50 },
}

local function setup(extra)
  ember.setup(vim.tbl_deep_extend("force", base, extra or {}))
end

local function float_done()
  return ui.last and ui.last.done and ui.last
end

local function wait_float(what)
  local f = H.wait(float_done, GEN_MS, what)
  H.ok(not f.failed, "the request failed: " .. f.text)
  return f
end

local function token_note(mark, where)
  local msg = H.wait(function()
    return H.note_matching(mark, "%d+ tokens in the " .. where)
  end, GEN_MS, "the count of the " .. where)
  return tonumber(msg:match("(%d+) tokens"))
end

H.data.token_counts = {}
H.data.progress = {}
vim.api.nvim_create_autocmd("User", {
  pattern = "EmberProgress",
  callback = function(ev)
    table.insert(H.data.progress, ev.data)
  end,
})

-- Every ember/stream delta, by request id.
local deltas = {}
daemon.subscribe("ember/stream", function(p)
  deltas[p.id] = deltas[p.id] or {}
  table.insert(deltas[p.id], p.delta)
end)

---------------------------------------------------------------------------------------------

H.case("daemon: starts and answers initialize", function()
  setup()
  daemon.start()
  local info = H.wait(daemon.info, 60000, "the initialize result")
  H.eq("number", type(info.pid), "pid")
  H.data.daemon_pid = info.pid
end)

H.case("summarize: a window with a non-empty summary; p inserts it", function()
  local para = {
    "The city council met on Tuesday to discuss the new park on Elm Street.",
    "Residents asked for more trees, a playground and better lighting.",
    "The council agreed to fund the playground this year and the trees next year.",
  }
  local buf = H.buffer(vim.list_extend(vim.deepcopy(para), { "", "Unrelated last line." }))
  vim.api.nvim_win_set_cursor(0, { 2, 0 })
  local req = ember.summarize()
  local f = wait_float("the summary")
  local summary = text.clean(f.text)
  H.data.summary = summary
  H.ok(summary ~= "", "the summary is empty")
  H.eq(f.win, vim.api.nvim_get_current_win(), "the window has the focus")
  H.eq(vim.split(f.text, "\n"), vim.api.nvim_buf_get_lines(f.buf, 0, -1, false), "the window shows the text")
  H.ok(deltas[req.id] and #deltas[req.id] > 0, "ember/stream deltas arrived")
  H.eq(f.text, table.concat(deltas[req.id]), "the deltas add up to the final text")
  H.feed("p")
  H.wait(function()
    return not f:is_open()
  end, 5000, "the window to close")
  local want = vim.deepcopy(para)
  table.insert(want, "")
  vim.list_extend(want, vim.split(summary, "\n"))
  vim.list_extend(want, { "", "Unrelated last line." })
  H.eq(want, H.lines(buf), "the summary below the paragraph")
end)

H.case("translate: replaces the selection as one undoable change", function()
  local orig = { "This first line stays.", "The weather is nice today.", "This last line stays." }
  local buf = H.buffer(orig)
  local seq = vim.fn.undotree().seq_cur
  vim.cmd("2Ember translate French")
  local f = wait_float("the translation")
  H.wait(function()
    return not f:is_open()
  end, 5000, "the translation to be applied (the window closes then)")
  local translation = vim.split(text.clean(f.text), "\n")
  H.data.translation = text.clean(f.text)
  H.ok(translation[1] ~= "", "the translation is empty")
  local want = { orig[1] }
  vim.list_extend(want, translation)
  table.insert(want, orig[3])
  H.eq(want, H.lines(buf), "the line replaced by the translation")
  H.eq(seq + 1, vim.fn.undotree().seq_cur, "one undo step")
  vim.cmd("undo")
  H.eq(orig, H.lines(buf), "undo restores the text")
end)

local review = "I absolutely love this phone. The battery lasts for days and the camera is superb."

--- Label and { label -> percent } from the classify window.
local function parse_scores(f)
  local lines = vim.split(f.text, "\n")
  local scores = {}
  for i = 3, #lines do
    local label, pct = lines[i]:match("^(%S+)%s+([%d.]+)%%")
    if label then
      scores[label] = tonumber(pct)
    end
  end
  return lines[1], scores
end

H.case("classify: the top label is one of the candidates", function()
  H.buffer({ review })
  vim.cmd("Ember classify positive negative")
  local f = wait_float("the scores")
  local label, scores = parse_scores(f)
  H.ok(label == "positive" or label == "negative", "top label: " .. label)
  local labels = vim.tbl_keys(scores)
  table.sort(labels)
  H.eq({ "negative", "positive" }, labels, "the labels shown")
  H.ok(scores.positive and scores.negative, "both scores shown: " .. f.text)
  H.ok(math.abs(scores.positive + scores.negative - 100) < 0.5, "scores add up to 100%: " .. f.text)
  H.ok(scores[label] >= math.max(scores.positive, scores.negative), "the top label has the top score")
  H.ok(vim.api.nvim_win_get_config(f.win).title[1][1]:find("classify: " .. label, 1, true), "title names the label")
end)

local tower = {
  "Café notes. The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
  "It is named after the engineer Gustave Eiffel, whose company designed and built the tower.",
  "The tower is 330 metres tall.",
}

-- The text of the buffer under the ask highlight (EmberAskSpan), or nil without one.
local function ask_span(buf)
  local ns = vim.api.nvim_get_namespaces().ember_ask
  local marks = ns and vim.api.nvim_buf_get_extmarks(buf, ns, 0, -1, { details = true }) or {}
  if #marks == 0 then
    return nil
  end
  local m = marks[1]
  H.eq("EmberAskSpan", m[4].hl_group, "highlight group")
  return table.concat(vim.api.nvim_buf_get_text(buf, m[2], m[3], m[4].end_row, m[4].end_col, {}), "\n")
end

H.case("ask: the answer streams into a window and its support is highlighted in a characterwise selection", function()
  setup() -- the same options: runs alone too (EMBER_TEST_ONLY)
  local buf = H.buffer(tower)
  local tasks = require("ember.tasks")
  -- From "The Eiffel" on line 1 (after the multibyte "é") to the end of line 2.
  vim.cmd("normal! 1G0fTv2G$")
  vim.cmd("normal! \27")
  local asked = H.answering_input("Who is the tower named after?", function()
    vim.cmd("'<,'>EmberAsk")
  end)
  H.eq("Ask: ", asked.prompt, "the question is asked for")
  local f = wait_float("the answer")
  local r = f.result
  H.ok(r and r.method == "generative", "a generative answer: " .. vim.inspect(r))
  H.ok(vim.startswith(f.text, r.answer), "the window starts with the answer: " .. f.text)
  H.ok(r.answer ~= "", "an answer")
  if r.supported then
    H.eq(r.quote, ask_span(buf), "the highlighted text is the quoted passage")
    H.ok(f.text:find("Support (quoted from the text, highlighted)", 1, true), f.text)
  else
    H.eq(nil, ask_span(buf), "nothing highlighted without support")
    H.ok(f.text:find("Not supported", 1, true), f.text)
  end
  f:close()
  H.eq(nil, ask_span(buf), "closing the window drops the highlight")
  -- Offsets are code points: a span after "é" and across lines lands on the right bytes.
  vim.cmd("normal! 1G0fTv2G$")
  vim.cmd("normal! \27")
  local t = require("ember.text").target({ range = 2, line1 = 1, line2 = 2 }, "buffer")
  local start = vim.fn.strchars(t.text:sub(1, t.text:find("Paris", 1, true) - 1))
  local stop = vim.fn.strchars(t.text:sub(1, t.text:find("Gustave", 1, true) - 1)) + #"Gustave"
  H.ok(tasks.highlight_span(t, { start = start, ["end"] = stop }), "a highlight")
  H.eq("Paris, France.\nIt is named after the engineer Gustave", ask_span(buf), "the span across lines")
  vim.api.nvim_buf_set_text(buf, 0, 0, 0, 0, { "x" }) -- before the text: it moves along
  H.eq("Paris, France.\nIt is named after the engineer Gustave", (function()
    tasks.highlight_span(t, { start = start, ["end"] = stop })
    return ask_span(buf)
  end)(), "the span after an edit before the text")
  vim.api.nvim_buf_set_text(buf, 1, 0, 1, 0, { "x" }) -- inside the text: no longer the text asked about
  H.eq(nil, tasks.highlight_span(t, { start = start, ["end"] = stop }), "no highlight once the text changed")
  require("ember.text").release(t)
end)

H.case("ask: :Ember ask on the buffer, with the question as arguments; errors are shown", function()
  H.buffer(tower)
  vim.cmd("Ember ask How tall is the tower?")
  local f = wait_float("the answer")
  H.eq("generative", f.result.method, "method")
  H.ok(f.result.windows == 1 and f.result.windows_kept == 1, "the whole buffer fit")
  H.ok(vim.api.nvim_win_get_config(f.win).title[1][1]:find("ask: How tall is the tower?", 1, true), "title")
  f:close()
  local mark = H.mark()
  require("ember").setup(vim.tbl_deep_extend("force", base, { ask = { method = "extractive" } }))
  vim.cmd("Ember ask How tall is the tower?")
  local failed = H.wait(function()
    return ui.last and ui.last.failed and ui.last
  end, GEN_MS, "the error")
  H.ok(failed.text:find("extractive needs a question-answering model", 1, true), failed.text)
  H.ok(H.note_matching(mark, "extractive needs"), "the error is reported")
  failed:close()
  setup()
end)

H.case("daemon: a killed daemon is restarted and answers again", function()
  local pid = daemon.info().pid
  local mark = H.mark()
  local seen = {}
  local au = vim.api.nvim_create_autocmd("User", { pattern = "EmberStatus", callback = function()
    table.insert(seen, ember.activity())
  end })
  vim.uv.kill(pid, "sigkill")
  local info = H.wait(function()
    local i = daemon.info()
    return i and i.pid ~= pid and i
  end, 60000, "a new daemon")
  vim.api.nvim_del_autocmd(au)
  H.ok(vim.tbl_contains(seen, "Ember: restarting · the daemon was killed by signal 9; restarting (1 of 3)"),
    "the statusline: " .. vim.inspect(seen))
  H.eq({}, H.notes_since(mark), "a restart is not a message")
  H.data.daemon_pid = info.pid
  H.buffer({ "Counting again after a restart." })
  vim.cmd("Ember tokens")
  token_note(mark, "buffer")
end)

H.case("warm: opening a Python file loads the completion model before the first keystroke", function()
  -- A fresh daemon: nothing loaded.
  daemon.restart()
  H.wait(daemon.info, 60000, "the new daemon")
  local phases = {}
  local au = vim.api.nvim_create_autocmd("User", { pattern = "EmberProgress", callback = function(ev)
    table.insert(phases, ev.data)
  end })
  setup({ complete = { auto = true, debounce_ms = 100 } })
  local dir = vim.fn.getcwd() .. "/warm"
  vim.fn.mkdir(dir, "p")
  vim.fn.writefile({ "def greet(name):", "    return " }, dir .. "/greet.py")
  vim.cmd("filetype on")
  vim.cmd.edit({ bang = true, args = { dir .. "/greet.py" } })
  -- No key was typed: the model loads because the file is one where completion is on.
  H.wait(function()
    return #phases > 0 and phases[#phases].phase == "ready"
  end, GEN_MS, "the model to load on open")
  vim.api.nvim_del_autocmd(au)
  H.eq("SmolLM2-135M-Instruct", phases[#phases].label, "the model's own name")
  H.eq("Ember: SmolLM2-135M-Instruct", ember.activity(), "the statusline names it")
  H.feed("2GA")
  H.feed("f")
  H.wait(complete.visible, GEN_MS, "the first suggestion")
  H.feed("<Esc>")
  setup()
  vim.cmd("silent! bwipe!")
end)

H.case("classify: without labels, the daemon's default labels", function()
  H.buffer({ review })
  vim.cmd("Ember classify")
  local f = wait_float("the scores")
  local label, scores = parse_scores(f)
  H.ok(vim.tbl_contains({ "positive", "negative", "neutral" }, label), "top label: " .. label)
  H.eq(3, vim.tbl_count(scores), "three scores: " .. f.text)
end)

H.case("tokens: :Ember tokens on the buffer and on a selection", function()
  local lines = { "Tokenizers split text into pieces.", "Ünïcödé and emoji 🙂 count too.", "def f(x): return x ** 2" }
  H.buffer(lines)
  local mark = H.mark()
  vim.cmd("Ember tokens")
  local n = token_note(mark, "buffer")
  table.insert(H.data.token_counts, { where = "buffer", text = table.concat(lines, "\n"), count = n })
  mark = H.mark()
  vim.cmd("2,3Ember tokens")
  local m = token_note(mark, "selection")
  table.insert(H.data.token_counts, { where = "selection", text = lines[2] .. "\n" .. lines[3], count = m })
  H.ok(n > m and m > 0, ("buffer %d > selection %d > 0"):format(n, m))
end)

H.case("tokens: the statusline count follows edits", function()
  local buf = H.buffer({ "A short line of text." })
  local function count()
    return tonumber((ember.statusline():match("· (%d+) tok$")))
  end
  local first = H.wait(count, GEN_MS, "a count in the statusline: " .. ember.statusline())
  table.insert(H.data.token_counts, { where = "statusline", text = table.concat(H.lines(buf), "\n"), count = first })
  H.feed("Goand another line, typed in insert mode<Esc>")
  local second = H.wait(function()
    local c = count()
    return c ~= first and c
  end, GEN_MS, "the count to change")
  H.eq(2, #H.lines(buf), "typed")
  table.insert(H.data.token_counts, { where = "statusline after edit", text = table.concat(H.lines(buf), "\n"), count = second })
  H.ok(ember.statusline():find("^SmolLM2[^ ]* · %d+ tok$"), "named after the model: " .. ember.statusline())
end)

H.case("complete: manual completion is inserted by Tab", function()
  local buf = H.buffer({ "def add(a, b):", "    return ", "", "print(add(1, 2))" })
  H.feed("2GA")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  local mark = H.mark()
  vim.cmd("Ember complete")
  H.wait(function()
    return complete.visible() or H.note_matching(mark, "complet")
  end, GEN_MS, "a suggestion")
  local s = complete.suggestion()
  H.ok(s, "no suggestion: " .. vim.inspect(H.notes_since(mark)))
  H.data.completion = s
  H.feed("<Tab>")
  H.wait(function()
    return not complete.visible() and H.lines(buf)[2] ~= "    return "
  end, 5000, "the insertion")
  local want = vim.split("def add(a, b):\n    return " .. s .. "\n\nprint(add(1, 2))", "\n")
  H.eq(want, H.lines(buf), "the suggestion inserted at the cursor")
  H.feed("<Esc>")
end)

H.case("complete: automatic completion while typing", function()
  setup({ complete = { auto = true, debounce_ms = 100 } })
  local shown = {}
  local au = vim.api.nvim_create_autocmd("User", {
    pattern = "EmberCompletionShown",
    callback = function(ev)
      table.insert(shown, ev.data.text)
    end,
  })
  local buf = H.buffer({ "# greet someone", "def greet(name):", "" })
  H.feed("3GA    ret")
  -- A request in flight, then one more keystroke: it is cancelled and a new one is made.
  H.wait(function()
    return complete._state.req ~= nil
  end, 10000, "an automatic request")
  local first = complete._state.req
  H.feed("u")
  H.wait(function()
    return complete._state.req ~= nil and complete._state.req ~= first
  end, 10000, "the next request")
  H.ok(first.done, "the first request was cancelled")
  H.wait(complete.visible, GEN_MS, "the suggestion")
  local s = complete.suggestion()
  H.eq({ s }, shown, "only the newest suggestion was shown")
  H.feed("<Tab>")
  H.wait(function()
    return H.lines(buf)[3] ~= "    retu"
  end, 5000, "the insertion")
  H.eq(vim.split("    retu" .. s, "\n")[1], H.lines(buf)[3], "inserted")
  H.feed("<Esc>")
  vim.api.nvim_del_autocmd(au)
  setup()
end)

H.case("errors: a daemon error reaches the user as its message", function()
  setup({ classify = { model = "no-such-model" } })
  H.buffer({ review })
  local mark = H.mark()
  vim.cmd("Ember classify")
  H.wait(function()
    return H.note_matching(mark, "classify failed")
  end, GEN_MS, "the error")
  local msg, level = H.note_matching(mark, "classify failed")
  H.eq(vim.log.levels.ERROR, level, "level")
  H.ok(type(msg) == "string" and not msg:find("table:") and not msg:find("{"), "readable: " .. tostring(msg))
  H.ok(msg:find("no%-such%-model"), "names the model: " .. msg)
  H.ok(float_done().failed, "the window shows the error")
  setup()
end)

H.case("status: :Ember status lists the models", function()
  vim.cmd("Ember status")
  local f = wait_float("the status")
  H.ok(f.text:find("models:"), f.text)
  H.ok(f.text:find("name: default", 1, true) or f.text:find("- default", 1, true), f.text)
  H.ok(f.text:find("rss_bytes"), f.text)
end)

H.case("progress: the model load was reported", function()
  local phases = {}
  for _, p in ipairs(H.data.progress) do
    H.eq("default", p.model, "model")
    H.eq("SmolLM2-135M-Instruct", p.label, "label")
    table.insert(phases, p.phase)
  end
  H.ok(#phases >= 2, "progress events: " .. vim.inspect(phases))
  H.eq("ready", phases[#phases], "the last phase")
  H.ok(not H.note_matching(0, "ready"), "no message says ready")
  H.ok(not H.note_matching(0, "loading"), "no message says loading")
  H.eq("SmolLM2-135M-Instruct", daemon.label("default"), "the label learnt from the daemon")
end)

H.case("health: :checkhealth ember is all OK", function()
  vim.cmd("checkhealth ember")
  local report = table.concat(H.lines(), "\n")
  H.ok(report:find("the daemon answers: ember"), report)
  H.ok(report:find("loaded: SmolLM2-135M-Instruct (default)", 1, true), report)
  H.ok(not report:find("ERROR"), report)
  vim.cmd("tabclose")
end)

H.case("complete: a newer request for the buffer supersedes the one in flight; it gets -32800 and is never shown", function()
  -- The same daemon behind a proxy that records the wire: Neovim's RPC client drops -32800 replies.
  local rec = vim.fn.tempname()
  local proxy = { python, proxy_py, rec }
  setup({ cmd = vim.list_extend(proxy, { ember_bin, "serve" }), complete = { max_tokens = 200 } })
  local function wire(dir, pred)
    return vim.tbl_filter(function(e)
      return e.dir == dir and pred(e.msg)
    end, H.record(rec))
  end
  local shown = {}
  local au = vim.api.nvim_create_autocmd("User", {
    pattern = "EmberCompletionShown",
    callback = function(ev)
      table.insert(shown, ev.data.text)
    end,
  })
  local buf = H.buffer({ "def add(a, b):", "    return " })
  H.feed("2GA")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  complete.request() -- long (200 tokens): still queued or running when the next one comes
  H.wait(function()
    return #wire("in", function(m)
      return m.method == "complete"
    end) == 1
  end, GEN_MS, "the first request on the wire")
  complete.request() -- a newer one for the same buffer, as `:Ember complete` again would make
  H.wait(complete.visible, GEN_MS, "the newer suggestion")

  local requests = wire("in", function(m)
    return m.method == "complete"
  end)
  H.eq(2, #requests, "two requests")
  local first, second = requests[1].msg, requests[2].msg
  H.eq(complete.supersede_key(buf), first.params.supersede, "the buffer is the supersede key")
  H.eq(first.params.supersede, second.params.supersede, "the same key")
  local replies = wire("out", function(m)
    return m.id == first.id
  end)
  H.eq(1, #replies, "one reply to the first request")
  H.eq(-32800, replies[1].msg.error and replies[1].msg.error.code, "the first request was cancelled")
  H.eq({}, wire("in", function(m)
    return m.method == "$/cancelRequest"
  end), "no $/cancelRequest: the daemon dropped it because the newer request superseded it")
  local answer = wire("out", function(m)
    return m.id == second.id and m.result ~= nil
  end)[1]
  H.eq({ answer.msg.result.text }, shown, "only the newer completion was ever shown")
  H.feed("<Esc>")
  vim.api.nvim_del_autocmd(au)
  setup()
end)


H.case("complete: language, path, workspace context and feedback reach the real daemon", function()
  local rec = vim.fn.tempname()
  setup({
    cmd = { python, proxy_py, rec, ember_bin, "serve" },
    complete = { max_tokens = 8 },
    context = { debounce_ms = 10 },
  })
  local function wire(dir, pred)
    return vim.tbl_filter(function(e)
      return e.dir == dir and pred(e.msg)
    end, H.record(rec))
  end
  local tmp = assert(os.getenv("EMBER_TEST_TMP"))
  vim.cmd("cd " .. vim.fn.fnameescape(tmp))
  vim.fn.mkdir(tmp .. "/proj", "p")
  vim.fn.writefile({ "def scale_vector(values, factor):", "    return [v * factor for v in values]" }, tmp .. "/proj/helper.py")
  vim.fn.writefile({ "from helper import scale_vector", "", "result = " }, tmp .. "/proj/main.py")
  vim.cmd("edit! proj/helper.py")
  vim.cmd("edit proj/main.py")
  H.feed("3GA")
  H.wait(function()
    return vim.api.nvim_get_mode().mode == "i"
  end)
  local mark = H.mark()
  vim.cmd("Ember complete")
  H.wait(function()
    return #wire("out", function(m)
      return m.result and m.result.completion_id
    end) == 1 or H.note_matching(mark, "complet")
  end, GEN_MS, "the answer")
  local req = wire("in", function(m)
    return m.method == "complete"
  end)[1].msg
  H.eq("python", req.params.language, "language")
  H.eq("proj/main.py", req.params.path, "path")
  local adds = wire("in", function(m)
    return m.method == "context/add"
  end)
  H.ok(#adds >= 1, "context/add sent")
  H.eq("proj/helper.py", adds[1].msg.params.chunks[1].path, "the other file's chunk")
  local result = wire("out", function(m)
    return m.id == req.id
  end)[1].msg.result
  H.ok(type(result.completion_id) == "string", "a completion_id: " .. vim.inspect(result))
  if result.text ~= "" then
    H.wait(complete.visible, 5000, "the suggestion")
    H.feed("<Tab>")
    H.wait(function()
      return #wire("in", function(m)
        return m.method == "completion/feedback" and m.params.event == "accepted"
      end) == 1
    end, 5000, "the accepted report")
    local events = vim.tbl_map(function(e)
      return e.msg.params.completion_id .. ":" .. e.msg.params.event
    end, wire("in", function(m)
      return m.method == "completion/feedback"
    end))
    H.eq({ result.completion_id .. ":shown", result.completion_id .. ":accepted" }, events, "feedback")
  end
  H.feed("<Esc>")
  -- A later request's answer shows the daemon took both notifications without complaint.
  local done = false
  daemon.request("daemon/status", nil, function()
    done = true
  end)
  H.wait(function()
    return done
  end, GEN_MS, "daemon/status")
  local bad = vim.tbl_filter(function(l)
    return l:find("Dropping context/add", 1, true) or l:find("Dropping completion/feedback", 1, true)
      or l:find("Could not handle", 1, true)
  end, H.read_lines(require("ember.config").log_file()))
  H.eq({}, bad, "the daemon's log")
  vim.cmd("silent! %bwipeout!")
  setup()
end)

H.run()
