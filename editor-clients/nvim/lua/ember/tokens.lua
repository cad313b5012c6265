--- The statusline's token count of the current buffer, kept up to date (debounced).
---
--- Nothing runs until require("ember").statusline() is first called: a statusline that does not
--- show the count costs nothing.
local config = require("ember.config")
local daemon = require("ember.daemon")
local log = require("ember.log")

local M = {}

local st = {
  active = false,
  timer = nil, ---@type uv.uv_timer_t|nil
  req = nil, ---@type ember.Request|nil
  counts = {}, -- buf -> { tick, count, model }
}
M._state = st

local function buffer_text(buf)
  return table.concat(vim.api.nvim_buf_get_lines(buf, 0, -1, false), "\n")
end

local function countable(buf)
  if not vim.api.nvim_buf_is_valid(buf) or not vim.api.nvim_buf_is_loaded(buf) then
    return false
  end
  local bt = vim.bo[buf].buftype
  if bt ~= "" and bt ~= "acwrite" then
    return false
  end
  local size = vim.api.nvim_buf_get_offset(buf, vim.api.nvim_buf_line_count(buf))
  return size <= config.options.tokens.max_bytes
end

--- Count the tokens of `buf` now (unless its count is current).
function M.update(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  if not countable(buf) then
    return
  end
  local tick = vim.b[buf].changedtick
  local known = st.counts[buf]
  if known and known.tick == tick then
    return
  end
  daemon.cancel(st.req)
  st.req = daemon.request("tokenize", {
    text = buffer_text(buf),
    model = config.options.tokens.model,
    return_ids = false,
    return_tokens = false,
    return_offsets = false,
  }, function(err, result)
    st.req = nil
    if err then
      log.warn("statusline token count failed: %s", require("ember.util").error_text(err))
      return
    end
    st.counts[buf] = { tick = tick, count = result.count, model = result.model }
    vim.cmd.redrawstatus({ bang = true })
    vim.api.nvim_exec_autocmds("User", { pattern = "EmberTokensUpdated", modeline = false, data = { buf = buf } })
  end)
end

local function schedule(buf)
  st.timer = st.timer or vim.uv.new_timer()
  st.timer:stop()
  st.timer:start(config.options.tokens.debounce_ms, 0, vim.schedule_wrap(function()
    if vim.api.nvim_get_current_buf() == buf then
      M.update(buf)
    end
  end))
end

function M.activate()
  if st.active then
    return
  end
  st.active = true
  local group = vim.api.nvim_create_augroup("ember_tokens", { clear = true })
  vim.api.nvim_create_autocmd({ "BufEnter", "TextChanged", "TextChangedI", "InsertLeave" }, {
    group = group,
    callback = function(ev)
      schedule(ev.buf)
    end,
  })
  vim.api.nvim_create_autocmd("BufWipeout", {
    group = group,
    callback = function(ev)
      st.counts[ev.buf] = nil
    end,
  })
  schedule(vim.api.nvim_get_current_buf())
end

--- The count for `buf` ({ count, model, current }) or nil when none is known yet.
function M.get(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  local c = st.counts[buf]
  if not c then
    return nil
  end
  return { count = c.count, model = c.model, current = c.tick == vim.b[buf].changedtick }
end

--- The model's own name for the daemon's `model` field (see daemon.label).
function M.label(model)
  return daemon.label(model)
end

--- "<model> · <n> tok" for the current buffer, or what the plugin is doing (see statusline.lua).
function M.statusline()
  return require("ember.statusline").text()
end

return M
