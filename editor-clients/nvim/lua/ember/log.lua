--- The plugin's log: one file that the daemon's stderr is appended to as well.
local config = require("ember.config")

local M = {}

-- Start a fresh file beyond this size (the previous one is kept as ember.log.1).
M.max_bytes = 4 * 1024 * 1024

function M.path()
  return config.log_file()
end

--- Make sure the log's folder exists and the file stays bounded; returns the path.
function M.prepare()
  local path = M.path()
  vim.fn.mkdir(vim.fn.fnamemodify(path, ":h"), "p")
  local stat = vim.uv.fs_stat(path)
  if stat and stat.size > M.max_bytes then
    vim.uv.fs_rename(path, path .. ".1")
  end
  return path
end

---@param level "DEBUG"|"INFO"|"WARN"|"ERROR"
function M.write(level, fmt, ...)
  local ok, msg = pcall(string.format, fmt, ...)
  if not ok then
    msg = fmt
  end
  local fd = io.open(M.path(), "a")
  if not fd then
    return
  end
  fd:write(("[%s] [ember.nvim] %s %s\n"):format(os.date("%Y-%m-%d %H:%M:%S"), level, msg))
  fd:close()
end

function M.info(...)
  M.write("INFO", ...)
end

function M.warn(...)
  M.write("WARN", ...)
end

function M.error(...)
  M.write("ERROR", ...)
end

return M
