--- Workspace context for inline completion, as llama.vim's ring buffer: chunks of text the user
--- met (a window of lines around the cursor of a file opened, around the last edit of a buffer
--- left or saved, and yanked text) go to the daemon in `context/add` notifications. The daemon
--- keeps a bounded ring per client and puts it before the prefix of inline completions.
---
--- Chunks are gathered for `context.debounce_ms` and sent together. Nothing is sent until inline
--- completion is in use (`complete.auto`, or a completion was asked for), so a Neovim that only
--- summarizes never makes the daemon read files; until then at most `context.max_pending` chunks
--- wait, oldest dropped. A chunk of the current buffer (opened, edited, saved) waits while the
--- cursor is in that buffer: the completion already sees that file, so it is sent once the user
--- works elsewhere. The same text from the same file is sent once.
local config = require("ember.config")
local daemon = require("ember.daemon")
local util = require("ember.util")

local M = {}

local group = vim.api.nvim_create_augroup("ember_context", { clear = true })

local st = {
  pending = {}, ---@type { text: string, path: string|nil, kind: string, buf: integer|nil }[]
  recent = {}, -- keys (path NUL text) of the chunks queued lately, oldest first
  edits = {}, -- buf -> row of its last edit not yet sent
  timer = nil, ---@type uv.uv_timer_t|nil
  used = false, -- a completion was asked for in this session
  attached = false,
}
M._state = st

local RECENT = 64

local function opts()
  return config.options.context
end

--- Whether chunks may go to the daemon now (they are still gathered otherwise).
function M.active()
  return opts().enabled and (st.used or config.options.complete.auto)
end

local function file_buffer(buf)
  return vim.api.nvim_buf_is_valid(buf)
    and vim.api.nvim_buf_is_loaded(buf)
    and vim.bo[buf].buftype == ""
    and vim.api.nvim_buf_get_name(buf) ~= ""
    and vim.b[buf].ember_context ~= false
end

--- `text` cut to `max` characters at a line end where there is one (a long line is cut inside).
local function bound(text, max)
  if vim.fn.strchars(text) <= max then
    return text
  end
  local cut = vim.fn.strcharpart(text, 0, max)
  return cut:match("^(.*)\n") or cut
end

--- The lines of `buf` around `row` (1-based): `context.lines` of them, the window starting half
--- of it above `row` (so at the top of a file freshly opened it is the file's start).
function M.window(buf, row)
  local o = opts()
  local count = vim.api.nvim_buf_line_count(buf)
  local first = math.max(1, math.min(row - math.floor(o.lines / 2), count - o.lines + 1))
  local last = math.min(count, first + o.lines - 1)
  local lines = vim.api.nvim_buf_get_lines(buf, first - 1, last, false)
  -- Read no more than needed from very long lines.
  local text, size = {}, 0
  for _, l in ipairs(lines) do
    table.insert(text, l)
    size = size + #l + 1
    if size > 4 * o.max_chars then
      break
    end
  end
  return bound(table.concat(text, "\n"), o.max_chars)
end

local function schedule_flush()
  st.timer = st.timer or vim.uv.new_timer()
  st.timer:stop()
  st.timer:start(opts().debounce_ms, 0, vim.schedule_wrap(function()
    M.flush()
  end))
end

--- Queue a chunk (dropped when it is blank or was queued lately).
---@param kind "open"|"edit"|"save"|"yank"|"copy"
function M.add(text, kind, buf)
  if not opts().enabled or type(text) ~= "string" or not text:find("%S") then
    return false
  end
  text = bound(text, opts().max_chars)
  local path = buf and util.buf_path(buf) or nil
  local key = (path or "") .. "\0" .. text
  for _, k in ipairs(st.recent) do
    if k == key then
      return false
    end
  end
  table.insert(st.recent, key)
  if #st.recent > RECENT then
    table.remove(st.recent, 1)
  end
  table.insert(st.pending, { text = text, path = path, kind = kind, buf = buf })
  while #st.pending > opts().max_pending do
    table.remove(st.pending, 1)
  end
  schedule_flush()
  return true
end

--- Send what is pending, except the current buffer's own file chunks (they wait). Returns the
--- number of chunks sent.
function M.flush()
  if #st.pending == 0 or not M.active() or not daemon.is_running() then
    return 0
  end
  local here = vim.api.nvim_get_current_buf()
  local send, keep = {}, {}
  for _, c in ipairs(st.pending) do
    if c.buf == here and c.kind ~= "yank" and c.kind ~= "copy" then
      table.insert(keep, c)
    else
      table.insert(send, { text = c.text, path = c.path, kind = c.kind })
    end
  end
  if #send == 0 then
    return 0
  end
  if daemon.notify("context/add", { chunks = send }) == false then
    return 0
  end
  st.pending = keep
  return #send
end

--- A completion is about to be asked for in `buf`: from now on chunks are sent.
function M.before_complete()
  st.used = true
  if st.timer then
    st.timer:stop()
  end
  return M.flush()
end

local function on_open(ev)
  local buf = ev.buf
  if file_buffer(buf) and vim.api.nvim_get_current_buf() == buf then
    M.add(M.window(buf, vim.api.nvim_win_get_cursor(0)[1]), "open", buf)
  end
  -- Chunks held while their buffer was current can go now.
  if #st.pending > 0 then
    schedule_flush()
  end
end

local function on_change(ev)
  if vim.api.nvim_get_current_buf() == ev.buf then
    st.edits[ev.buf] = vim.api.nvim_win_get_cursor(0)[1]
  end
end

local function on_leave(ev)
  local row = st.edits[ev.buf]
  st.edits[ev.buf] = nil
  if row and file_buffer(ev.buf) then
    M.add(M.window(ev.buf, row), "edit", ev.buf)
  end
end

local function on_save(ev)
  if not file_buffer(ev.buf) then
    return
  end
  local row = st.edits[ev.buf]
  st.edits[ev.buf] = nil
  if not row and vim.api.nvim_get_current_buf() == ev.buf then
    row = vim.api.nvim_win_get_cursor(0)[1]
  end
  M.add(M.window(ev.buf, row or 1), "save", ev.buf)
end

local function on_yank(ev)
  local e = vim.v.event
  if e.operator ~= "y" or type(e.regcontents) ~= "table" then
    return
  end
  -- Only as much as one chunk can hold is joined.
  local parts, size = {}, 0
  for _, l in ipairs(e.regcontents) do
    table.insert(parts, l)
    size = size + #l + 1
    if size > 4 * opts().max_chars then
      break
    end
  end
  M.add(table.concat(parts, "\n"), "yank", file_buffer(ev.buf) and ev.buf or nil)
end

--- Install the autocommands (once).
function M.attach()
  if st.attached then
    return
  end
  st.attached = true
  vim.api.nvim_create_autocmd("BufEnter", { group = group, callback = on_open })
  vim.api.nvim_create_autocmd({ "TextChanged", "TextChangedI" }, { group = group, callback = on_change })
  vim.api.nvim_create_autocmd("BufLeave", { group = group, callback = on_leave })
  vim.api.nvim_create_autocmd("BufWritePost", { group = group, callback = on_save })
  vim.api.nvim_create_autocmd("TextYankPost", { group = group, callback = on_yank })
  vim.api.nvim_create_autocmd("BufWipeout", { group = group, callback = function(ev)
    st.edits[ev.buf] = nil
  end })
  vim.api.nvim_create_autocmd("User", { group = group, pattern = "EmberReady", callback = function()
    M.flush()
  end })
end

return M
