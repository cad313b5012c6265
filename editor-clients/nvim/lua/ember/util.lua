--- Small helpers shared by the modules: user messages and error text.
local M = {}

function M.notify(msg, level)
  vim.notify("Ember: " .. msg, level or vim.log.levels.INFO, { title = "Ember" })
end

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
