--- A small test runner for headless Neovim, driven by tests/editors/test_nvim.py.
---
--- Cases run one after another inside a coroutine. `H.wait(pred)` polls like vim.wait() but
--- yields to Neovim's main loop between polls, so keys sent with `H.feed()` are really typed
--- (mappings, TextChangedI, InsertLeave...) while a case waits. Results go to the JSON file named
--- by $EMBER_TEST_RESULTS; then Neovim quits (which also exercises the plugin's VimLeavePre).
local H = {}

H.cases = {}
H.results = {}
H.data = {} -- facts the pytest side checks itself (e.g. texts to tokenize independently)
H.notes = {} -- every vim.notify: { msg, level }

local out = assert(os.getenv("EMBER_TEST_RESULTS"), "set EMBER_TEST_RESULTS")
local only = os.getenv("EMBER_TEST_ONLY")

vim.notify = function(msg, level)
  table.insert(H.notes, { msg = msg, level = level or vim.log.levels.INFO })
  io.stderr:write(("[notify %s] %s\n"):format(level or "", tostring(msg)))
end

function H.case(name, fn)
  table.insert(H.cases, { name = name, fn = fn })
end

function H.sleep(ms)
  local co = coroutine.running()
  vim.defer_fn(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      io.stderr:write("harness: " .. tostring(err) .. "\n")
    end
  end, ms)
  coroutine.yield()
end

--- Wait until pred() is truthy (returns its value); fail the case after timeout_ms.
function H.wait(pred, timeout_ms, what)
  timeout_ms = timeout_ms or 10000
  local deadline = vim.uv.now() + timeout_ms
  while true do
    local ok, v = pcall(pred)
    if ok and v then
      return v
    end
    if vim.uv.now() > deadline then
      error(("timed out after %d ms waiting for %s%s"):format(timeout_ms, what or "a condition", ok and "" or (" (" .. tostring(v) .. ")")), 2)
    end
    H.sleep(15)
  end
end

--- Let what was vim.schedule()d so far run (the queue is first in, first out).
function H.tick()
  local done = false
  vim.schedule(function()
    done = true
  end)
  H.wait(function()
    return done
  end, 5000, "the scheduled callbacks")
end

--- Type keys as a user would (processed by the main loop while the case waits).
function H.feed(keys)
  vim.api.nvim_input(keys)
  H.sleep(0)
end

function H.eq(want, got, what)
  if not vim.deep_equal(want, got) then
    error(("%s: expected %s, got %s"):format(what or "value", vim.inspect(want), vim.inspect(got)), 2)
  end
end

function H.ok(cond, what)
  if not cond then
    error(what or "assertion failed", 2)
  end
  return cond
end

--- The notifications since mark (H.mark()), as strings.
function H.mark()
  return #H.notes
end

--- Send the plugin's messages that wait to be coalesced (util.lua) now.
function H.flush()
  local ok, util = pcall(require, "ember.util")
  if ok and util.flush_messages then
    util.flush_messages()
  end
end

function H.notes_since(mark, level)
  H.flush()
  local list = {}
  for i = mark + 1, #H.notes do
    if level == nil or H.notes[i].level == level then
      table.insert(list, H.notes[i].msg)
    end
  end
  return list
end

--- The first notification since `mark` that contains `pattern` (Lua pattern).
function H.note_matching(mark, pattern)
  H.flush()
  for i = mark + 1, #H.notes do
    local m = tostring(H.notes[i].msg)
    if m:find(pattern) then
      return m, H.notes[i].level
    end
  end
end

--- A fresh buffer with `lines` in the only window, in normal mode.
function H.buffer(lines)
  if vim.api.nvim_get_mode().mode ~= "n" then
    vim.cmd("stopinsert")
    H.wait(function()
      return vim.api.nvim_get_mode().mode == "n"
    end, 2000, "normal mode")
  end
  for _, win in ipairs(vim.api.nvim_list_wins()) do
    if vim.api.nvim_win_get_config(win).relative ~= "" then
      pcall(vim.api.nvim_win_close, win, true)
    end
  end
  vim.cmd("silent! only")
  vim.cmd("enew!")
  vim.bo.bufhidden = "wipe"
  vim.api.nvim_buf_set_lines(0, 0, -1, false, lines or {})
  vim.api.nvim_win_set_cursor(0, { 1, 0 })
  return vim.api.nvim_get_current_buf()
end

--- Run `fn` while vim.ui.input answers `answer` at once; returns the options it was asked with.
function H.answering_input(answer, fn)
  local input, asked = vim.ui.input, nil
  vim.ui.input = function(opts, on_confirm)
    asked = opts
    on_confirm(answer)
  end
  local ok, err = pcall(fn)
  vim.ui.input = input
  assert(ok, err)
  return asked
end

function H.lines(buf)
  return vim.api.nvim_buf_get_lines(buf or 0, 0, -1, false)
end

--- Lines of a file (for the fake daemon's record), or {}.
function H.read_lines(path)
  local f = io.open(path)
  if not f then
    return {}
  end
  local lines = {}
  for l in f:lines() do
    table.insert(lines, l)
  end
  f:close()
  return lines
end

--- Messages in the fake daemon's record file, decoded: { pid, dir, msg }.
function H.record(path)
  local list = {}
  for _, l in ipairs(H.read_lines(path)) do
    local ok, v = pcall(vim.json.decode, l)
    if ok then
      table.insert(list, v)
    end
  end
  return list
end

local function write_results()
  local f = assert(io.open(out, "w"))
  f:write(vim.json.encode({ cases = H.results, data = H.data, notes = vim.tbl_map(function(n)
    return tostring(n.msg)
  end, H.notes) }))
  f:close()
end

function H.run()
  -- Give up as a whole rather than hang pytest (it reports the cases that did not finish).
  local limit = tonumber(os.getenv("EMBER_TEST_TIMEOUT_MS") or "170000")
  vim.defer_fn(function()
    io.stderr:write("harness: overall timeout\n")
    write_results()
    vim.cmd("cquit! 2")
  end, limit)
  local co = coroutine.create(function()
    for _, c in ipairs(H.cases) do
      if not only or c.name:find(only, 1, true) then
        io.stderr:write(("harness: case %s\n"):format(c.name))
        local start = vim.uv.now()
        local ok, err = xpcall(c.fn, debug.traceback)
        H.results[c.name] = { ok = ok, err = not ok and tostring(err) or nil, ms = vim.uv.now() - start }
        io.stderr:write(("harness: %s %s\n"):format(ok and "PASS" or "FAIL", ok and c.name or tostring(err)))
        write_results()
      end
    end
    if H.after_all then
      pcall(H.after_all)
    end
    write_results()
    vim.cmd("stopinsert")
    vim.schedule(function()
      vim.cmd("qall!")
    end)
  end)
  vim.schedule(function()
    local ok, err = coroutine.resume(co)
    if not ok then
      io.stderr:write("harness: " .. tostring(err) .. "\n")
      write_results()
      vim.cmd("cquit! 3")
    end
  end)
end

return H
