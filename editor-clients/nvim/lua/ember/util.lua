--- Small helpers shared by the modules: user messages and error text.
local M = {}

-- Messages of one moment go out as one. Two echoes before the screen is redrawn stack up in the
-- message area and raise "Press ENTER or type command to continue", which eats the user's next key
-- (a crash fails a request and schedules a restart in the same tick). So messages wait a moment,
-- then go out together: to a notifier plugin (nvim-notify, noice, fidget...) as one vim.notify, to
-- Neovim's own message area as one line that fits it (the full text goes to the log when cut).
local queue = {}
local flush_timer = nil

-- Long enough to gather what one event (a crash, a failed reply) says, short enough not to be seen.
M.COALESCE_MS = 30

local function builtin_notify()
  local info = debug.getinfo(vim.notify, "S")
  return info ~= nil and type(info.source) == "string" and info.source:find("vim/_editor.lua", 1, true) ~= nil
end

local function flush()
  local items = queue
  queue = {}
  if #items == 0 then
    return
  end
  local level = vim.log.levels.INFO
  local texts = {}
  for _, it in ipairs(items) do
    level = math.max(level, it.level)
    if not vim.tbl_contains(texts, it.msg) then
      table.insert(texts, it.msg)
    end
  end
  if not builtin_notify() then
    vim.notify("Ember: " .. table.concat(texts, "\n"), level, { title = "Ember" })
    return
  end
  local line = "Ember: " .. table.concat(texts, " · "):gsub("%s*\n%s*", " · ")
  -- v:echospace leaves out the ruler when the current window has none of its own (a float):
  -- the ruler is then drawn on the command line, 18 columns.
  local room = math.min(vim.v.echospace > 0 and vim.v.echospace or vim.o.columns, vim.o.columns - (vim.o.ruler and 19 or 1))
  room = math.max(20, room - 1)
  if vim.fn.strdisplaywidth(line) > room then
    require("ember.log").write(level >= vim.log.levels.ERROR and "ERROR" or "WARN", "%s", line)
    local tail = "… (:Ember log)"
    line = vim.fn.strcharpart(line, 0, room - vim.fn.strdisplaywidth(tail))
    while vim.fn.strdisplaywidth(line) > room - vim.fn.strdisplaywidth(tail) do
      line = vim.fn.strcharpart(line, 0, vim.fn.strchars(line) - 1)
    end
    line = line .. tail
  end
  local hl = level >= vim.log.levels.ERROR and "ErrorMsg" or level == vim.log.levels.WARN and "WarningMsg" or nil
  vim.api.nvim_echo({ { line, hl } }, true, {})
end

--- Tell the user `msg` (coalesced with the other messages of the same moment).
function M.notify(msg, level)
  table.insert(queue, { msg = tostring(msg), level = level or vim.log.levels.INFO })
  if not flush_timer then
    flush_timer = vim.uv.new_timer()
  end
  if #queue == 1 then
    flush_timer:start(M.COALESCE_MS, 0, vim.schedule_wrap(flush))
  end
end

--- Send the messages waiting now (tests, and before Neovim quits).
M.flush_messages = flush

function M.warn(msg)
  M.notify(msg, vim.log.levels.WARN)
end

function M.error(msg)
  M.notify(msg, vim.log.levels.ERROR)
end

-- JSON-RPC error codes of the Ember protocol (PROTOCOL.md), and two of the client's own for
-- replies that can never come.
M.codes = {
  ParseError = -32700,
  InvalidRequest = -32600,
  MethodNotFound = -32601,
  InvalidParams = -32602,
  InternalError = -32603,
  RequestCancelled = -32800,
  ModelLoadError = -32001,
  InputTooLong = -32002,
  Busy = -32003,
  ShuttingDown = -32004,
  TaskUnavailable = -32005,
  -- client side: the daemon exited, or was stopped, before it answered
  DaemonExited = -32090,
  DaemonStopped = -32091,
  DaemonUnavailable = -32092,
}

--- A JSON-RPC error (or anything else) as one readable sentence.
function M.error_text(err)
  if type(err) ~= "table" then
    return tostring(err)
  end
  local msg = type(err.message) == "string" and err.message or "unknown error"
  local data = type(err.data) == "table" and err.data or {}
  if err.code == M.codes.InputTooLong and data.tokens and data.limit and not msg:find(tostring(data.limit), 1, true) then
    msg = ("%s (%d tokens; the model takes at most %d)"):format(msg, data.tokens, data.limit)
  elseif err.code == M.codes.Busy then
    msg = msg .. " (the daemon is busy; try again in a moment)"
  elseif err.code == M.codes.MethodNotFound then
    msg = msg .. " (is the daemon older than the plugin?)"
  end
  return msg
end

--- Report a failed request to the user, unless it was one the user caused (a stop or restart).
function M.report(what, err)
  if type(err) == "table" and err.code == M.codes.DaemonStopped then
    return
  end
  M.error(("%s failed: %s"):format(what, M.error_text(err)))
end

--- A buffer's path as the daemon gets it (`path` of complete and context/add): relative to the
--- working directory (the workspace root) when the file is inside it, else absolute, or the
--- buffer's URI-like name (oil://, fugitive://). nil for a buffer without a name, or a name longer
--- than the daemon takes.
function M.buf_path(buf)
  local name = vim.api.nvim_buf_get_name(buf)
  if name == "" then
    return nil
  end
  local path = name
  if not name:match("^%a[%w+.-]*://") then
    path = vim.fs.normalize(vim.fn.fnamemodify(name, ":p"))
    local root = vim.fs.normalize(vim.fn.getcwd())
    if root ~= "/" and path:sub(1, #root + 1) == root .. "/" then
      path = path:sub(#root + 2)
    end
  end
  return #path <= 4096 and path or nil
end

return M
