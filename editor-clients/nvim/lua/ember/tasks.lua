--- What each :Ember subcommand does: build params, send the request, show or apply the result.
local config = require("ember.config")
local daemon = require("ember.daemon")
local text = require("ember.text")
local ui = require("ember.ui")
local util = require("ember.util")

local M = {}

---@alias ember.CmdInfo { range: integer, line1: integer, line2: integer, fargs: string[] }|nil

local function target_or_warn(cmd, fallback)
  local t, why = text.target(cmd, fallback)
  if not t then
    util.warn(why)
  end
  return t
end

--- Call `run` with the command's words, else with what the user types (`input`: vim.ui.input's
--- options; nil: with `fallback`), trimmed. Nothing typed releases the target and runs nothing.
local function with_argument(t, cmd, input, fallback, run)
  local function go(value)
    value = value and vim.trim(value)
    if not value or value == "" then
      text.release(t)
      return
    end
    return run(value)
  end
  local words = cmd and cmd.fargs and #cmd.fargs > 0 and table.concat(cmd.fargs, " ") or nil
  if words then
    return go(words)
  elseif input then
    vim.ui.input(input, go)
  else
    return go(fallback)
  end
end

--- Stream a generative task into a float; `on_done(float, result)` runs on success.
local function stream_task(method, params, float, on_done)
  local req
  float.on_close = function()
    daemon.cancel(req)
  end
  params.stream = true
  req = daemon.request(method, params, function(err, result)
    if err then
      float:fail(util.error_text(err))
      util.report(method, err)
      return
    end
    float:finish(type(result) == "table" and type(result.text) == "string" and result.text or "")
    if on_done then
      on_done(float, result)
    end
  end, {
    on_stream = function(delta)
      float:append(delta)
    end,
  })
  return req
end

--- :Ember summarize: summary of the selection or paragraph, streamed into a float.
---@param cmd ember.CmdInfo
function M.summarize(cmd)
  local t = target_or_warn(cmd, "paragraph")
  if not t then
    return
  end
  local o = config.options.summarize
  local float = ui.open({ title = "summary", target = t })
  return stream_task("summarize", {
    text = t.text,
    form = o.form,
    length = o.length,
    max_tokens = o.max_tokens,
    model = o.model,
  }, float)
end

--- :Ember translate [lang]: translation streamed into a float, then put in place of the text
--- (or below it) as one undoable change, as `translate.action` says.
---@param cmd ember.CmdInfo
function M.translate(cmd)
  local t = target_or_warn(cmd, "paragraph")
  if not t then
    return
  end
  local o = config.options.translate
  with_argument(t, cmd, o.prompt and { prompt = "Translate to: ", default = o.target }, o.target, function(lang)
    local action = o.action
    local float = ui.open({ title = "translation → " .. lang, target = t, enter = action == "preview" })
    stream_task("translate", {
      text = t.text,
      target = lang,
      source = o.source,
      max_tokens = o.max_tokens,
      model = o.model,
    }, float, function(f, result)
      if action == "preview" then
        return
      end
      local apply = action == "replace" and text.replace or text.insert_below
      local ok, why = apply(t, result.text or "")
      if ok then
        f:close()
      else
        -- Keep the result: the float's keys can still insert or yank it.
        util.warn(why)
      end
    end)
  end)
end

local function bar(score, width)
  local n = math.floor(score * width + 0.5)
  return string.rep("█", n) .. string.rep("░", width - n)
end

--- The classify result as lines: the top label, then every label with its score.
function M.format_scores(result)
  local scores = vim.deepcopy(result.scores or {})
  table.sort(scores, function(a, b)
    return a.score > b.score
  end)
  local width = 0
  for _, s in ipairs(scores) do
    width = math.max(width, vim.fn.strdisplaywidth(s.label))
  end
  local lines = { ("%s"):format(result.label), "" }
  for _, s in ipairs(scores) do
    local pad = string.rep(" ", width - vim.fn.strdisplaywidth(s.label))
    table.insert(lines, ("%s%s  %5.1f%%  %s"):format(s.label, pad, s.score * 100, bar(s.score, 20)))
  end
  return lines
end

--- :Ember classify [labels...]: probability of each label (labels from the arguments, else
--- `classify.labels`, else the daemon's default).
---@param cmd ember.CmdInfo
function M.classify(cmd)
  local o = config.options.classify
  local labels = cmd and cmd.fargs and #cmd.fargs > 0 and cmd.fargs or o.labels
  if labels and #labels < 2 then
    util.warn("classify needs at least two labels")
    return
  end
  local t = target_or_warn(cmd, "paragraph")
  if not t then
    return
  end
  local float = ui.open({ title = "classify" })
  local req
  float.on_close = function()
    daemon.cancel(req)
  end
  req = daemon.request("classify", {
    text = t.text,
    labels = labels,
    calibrate = o.calibrate,
    model = o.model,
  }, function(err, result)
    text.release(t)
    if err then
      float:fail(util.error_text(err))
      util.report("classify", err)
      return
    end
    float.title = "classify: " .. tostring(result.label)
    float:finish(table.concat(M.format_scores(result), "\n"))
  end)
  return req
end

local ask_ns = vim.api.nvim_create_namespace("ember_ask")

--- Buffer position (0-based row, byte column) of code point `index` of `t`'s text, whose first
--- character is at (row, col). The daemon counts offsets in code points (as Python does).
local function position(t, row, col, index)
  local byte = vim.fn.byteidxcomp(t.text, index)
  if byte < 0 then
    return nil
  end
  local before = t.text:sub(1, byte)
  local lines = vim.split(before, "\n", { plain = true })
  if #lines == 1 then
    return row, col + #before
  end
  return row + #lines - 1, #lines[#lines]
end

--- Highlight the supporting span of an ask result in the buffer (EmberAskSpan), if the text it
--- was asked about is still there unchanged. Returns the extmark id, or nil.
function M.highlight_span(t, result)
  if type(result.start) ~= "number" or type(result["end"]) ~= "number" then
    return nil
  end
  local r, c, er, ec = text.range(t)
  if not r or table.concat(vim.api.nvim_buf_get_text(t.buf, r, c, er, ec, {}), "\n") ~= t.text then
    return nil
  end
  local sr, sc = position(t, r, c, result.start)
  local fr, fc = position(t, r, c, result["end"])
  if not sr or not fr then
    return nil
  end
  vim.api.nvim_buf_clear_namespace(t.buf, ask_ns, 0, -1)
  return vim.api.nvim_buf_set_extmark(t.buf, ask_ns, sr, sc, { end_row = fr, end_col = fc, hl_group = "EmberAskSpan" })
end

--- The ask result as the float shows it: the answer, then the supporting passage or why none.
function M.format_answer(result)
  local lines = { result.answer ~= "" and result.answer or "(no answer)", "" }
  if result.supported and type(result.quote) == "string" then
    local kind = result.method == "extractive" and ("span, score %.2f"):format(result.score or 0) or "quoted from the text"
    table.insert(lines, ("Support (%s, highlighted):"):format(kind))
    vim.list_extend(lines, vim.split("> " .. result.quote:gsub("\n", "\n> "), "\n", { plain = true }))
  else
    table.insert(lines, "Not supported: the passage the model quoted is not in the text.")
  end
  if result.windows_kept and result.windows and result.windows_kept < result.windows then
    table.insert(lines, ("(read %d of %d parts of the text, the most relevant to the question)"):format(result.windows_kept, result.windows))
  end
  return table.concat(lines, "\n")
end

--- :Ember ask [question] / :[range]EmberAsk [question]: the answer streams into a float, and the
--- passage that supports it is highlighted in the buffer until the float closes.
---@param cmd ember.CmdInfo
function M.ask(cmd)
  local t = target_or_warn(cmd, "buffer")
  if not t then
    return
  end
  local o = config.options.ask
  return with_argument(t, cmd, { prompt = "Ask: " }, nil, function(question)
    local float = ui.open({ title = "ask: " .. question })
    local req, mark
    float.on_close = function()
      daemon.cancel(req)
      if mark and vim.api.nvim_buf_is_valid(t.buf) then
        pcall(vim.api.nvim_buf_del_extmark, t.buf, ask_ns, mark)
      end
      text.release(t)
    end
    req = daemon.request("ask", {
      question = question,
      context = t.text,
      method = o.method,
      max_tokens = o.max_tokens,
      model = o.model,
      stream = true,
    }, function(err, result)
      if err then
        float:fail(util.error_text(err))
        util.report("ask", err)
        return
      end
      mark = M.highlight_span(t, result)
      float.result = result
      float:finish(M.format_answer(result))
    end, {
      on_stream = function(delta)
        float:append(delta)
      end,
    })
    return req
  end)
end

--- :Ember tokens: token count of the selection, or of the whole buffer.
---@param cmd ember.CmdInfo
function M.tokens(cmd)
  local t = target_or_warn(cmd, "buffer")
  if not t then
    return
  end
  text.release(t)
  local what = cmd and cmd.range and cmd.range > 0 and "selection" or "buffer"
  return daemon.request("tokenize", {
    text = t.text,
    model = config.options.tokens.model,
    return_ids = false,
    return_tokens = false,
    return_offsets = false,
  }, function(err, result)
    if err then
      util.report("tokenize", err)
      return
    end
    util.notify(("%d tokens in the %s (%s)"):format(result.count, what, require("ember.tokens").label(result.model)))
  end)
end

local function scalar(k, v)
  if v == vim.NIL then
    return "null"
  elseif type(v) == "number" and type(k) == "string" and k:match("_bytes$") then
    return ("%.1f MB"):format(v / 1e6)
  end
  return tostring(v)
end

local function all_scalars(t)
  for _, v in pairs(t) do
    if type(v) == "table" then
      return false
    end
  end
  return true
end

local function sorted_keys(t)
  local keys = vim.tbl_keys(t)
  table.sort(keys, function(a, b)
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- A JSON-ish value as indented lines, for :Ember status (whose fields may grow).
local function describe(value, indent, out)
  indent = indent or ""
  out = out or {}
  if type(value) ~= "table" then
    return out
  end
  for _, k in ipairs(sorted_keys(value)) do
    local v = value[k]
    local label = type(k) == "number" and "-" or (tostring(k) .. ":")
    if type(v) == "table" and next(v) == nil then
      table.insert(out, ("%s%s (none)"):format(indent, label))
    elseif type(v) == "table" and type(k) == "number" and all_scalars(v) then
      -- a list item of plain fields: one line
      local parts = {}
      for _, kk in ipairs(sorted_keys(v)) do
        table.insert(parts, ("%s: %s"):format(kk, scalar(kk, v[kk])))
      end
      table.insert(out, ("%s- %s"):format(indent, table.concat(parts, ", ")))
    elseif type(v) == "table" then
      local name = type(k) == "number" and v.name
      table.insert(out, indent .. label .. (name and (" " .. tostring(name)) or ""))
      describe(v, indent .. "  ", out)
    else
      table.insert(out, ("%s%s %s"):format(indent, label, scalar(k, v)))
    end
  end
  return out
end
M.describe = describe

--- :Ember status: the daemon's loaded models, memory and queue, and the client's view.
function M.status()
  local cs = daemon.client_state()
  local head = {
    ("client: %s · %s"):format(cs.status, table.concat(cs.cmd, " ")),
    ("log: %s"):format(cs.log_file),
  }
  if cs.failure then
    table.insert(head, "problem: " .. cs.failure)
  end
  local float = ui.open({ title = "status", text = table.concat(head, "\n") })
  return daemon.request("daemon/status", nil, function(err, result)
    if err then
      float:fail(util.error_text(err))
      util.report("daemon/status", err)
      return
    end
    daemon.learn_labels(type(result) == "table" and result.models or nil)
    local lines = vim.list_extend(head, { "" })
    float:finish(table.concat(describe(result, "", lines), "\n"))
  end)
end

function M.restart()
  util.notify("restarting the daemon")
  daemon.restart()
end

function M.log()
  local path = require("ember.log").prepare()
  vim.cmd("split " .. vim.fn.fnameescape(path))
  vim.bo.autoread = true
  vim.cmd("normal! G")
end

return M
