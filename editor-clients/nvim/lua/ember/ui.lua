--- The result window: a float that fills as text streams in, with keys to use the result.
local config = require("ember.config")
local text = require("ember.text")
local util = require("ember.util")

local M = {}

local ns = vim.api.nvim_create_namespace("ember_ui")

---@class ember.Float
---@field buf integer
---@field win integer
---@field title string
---@field text string
---@field done boolean
---@field failed boolean
---@field target ember.Target|nil
---@field on_close fun()|nil
local Float = {}
Float.__index = Float

M.hl = {
  EmberTitle = { link = "FloatTitle", default = true },
  EmberFooter = { link = "FloatFooter", default = true },
  EmberError = { link = "DiagnosticError", default = true },
  EmberGhost = { link = "Comment", default = true },
  EmberAskSpan = { link = "Search", default = true },
}

function M.define_highlights()
  for name, spec in pairs(M.hl) do
    vim.api.nvim_set_hl(0, name, spec)
  end
end

M.define_highlights()
vim.api.nvim_create_autocmd("ColorScheme", {
  group = vim.api.nvim_create_augroup("ember_ui_hl", {}),
  callback = M.define_highlights,
})

-- The float opened last, per kind of result (tests and users can find it).
M.last = nil ---@type ember.Float|nil

local function size()
  local o = config.options.window
  return math.max(20, math.min(o.max_width, vim.o.columns - 4)), math.max(1, math.min(o.max_height, vim.o.lines - 4))
end

local function footer_for(self)
  if not self.target or not self.done or self.failed then
    return nil
  end
  local k = config.options.window.keymaps
  local parts = {}
  for _, a in ipairs({ { k.replace, "replace" }, { k.insert, "insert below" }, { k.yank, "yank" }, { k.close, "close" } }) do
    if a[1] then
      table.insert(parts, ("%s %s"):format(a[1], a[2]))
    end
  end
  return { { " " .. table.concat(parts, " · ") .. " ", "EmberFooter" } }
end

function Float:refresh()
  if not self:is_open() then
    return
  end
  local lines = vim.split(self.text, "\n", { plain = true })
  if self.text == "" then
    lines = { self.done and "(empty)" or "…" }
  end
  vim.bo[self.buf].modifiable = true
  vim.api.nvim_buf_set_lines(self.buf, 0, -1, false, lines)
  vim.bo[self.buf].modifiable = false
  local width, max_height = size()
  local height = vim.api.nvim_win_text_height(self.win, {}).all
  local cfg = {
    width = width,
    height = math.max(1, math.min(max_height, height)),
  }
  -- Titles and footers need a border.
  local bordered = config.options.window.border ~= "none" and config.options.window.border ~= ""
  if bordered then
    cfg.title = { { (" Ember · %s%s "):format(self.title, self.done and "" or " …"), "EmberTitle" } }
    cfg.title_pos = "left"
  end
  local footer = bordered and footer_for(self)
  if footer then
    cfg.footer = footer
    cfg.footer_pos = "right"
  end
  vim.api.nvim_win_set_config(self.win, cfg)
end

function Float:is_open()
  return self.win ~= nil and vim.api.nvim_win_is_valid(self.win)
end

--- Add streamed text.
function Float:append(delta)
  if self.done then
    return
  end
  self.text = self.text .. delta
  self:refresh()
end

--- The final text (replaces whatever streamed in).
function Float:finish(final)
  self.text = final
  self.done = true
  self:refresh()
end

function Float:fail(msg)
  self.text = "Error: " .. msg
  self.done = true
  self.failed = true
  self:refresh()
  if self:is_open() then
    local first = vim.api.nvim_buf_get_lines(self.buf, 0, 1, false)[1] or ""
    vim.api.nvim_buf_set_extmark(self.buf, ns, 0, 0, { end_col = #first, hl_group = "EmberError" })
  end
end

function Float:close()
  if self:is_open() then
    vim.api.nvim_win_close(self.win, true)
  end
end

-- Actions of the result keys.
local function act(self, action)
  if not self.done then
    util.warn("still generating; wait for the result")
    return
  end
  if self.failed then
    return
  end
  local result = text.clean(self.text)
  if action == "yank" then
    vim.fn.setreg('"', result)
    util.notify("result yanked")
    return
  end
  local ok, why
  if action == "replace" then
    ok, why = text.replace(self.target, result)
  else
    ok, why = text.insert_below(self.target, result)
  end
  if not ok then
    util.warn(why)
    return
  end
  self:close()
end

---@param opts { title: string, target: ember.Target|nil, enter: boolean|nil, on_close: fun()|nil, text: string|nil, done: boolean|nil }
---@return ember.Float
function M.open(opts)
  local self = setmetatable({
    title = opts.title,
    text = opts.text or "",
    done = opts.done or false,
    failed = false,
    target = opts.target,
    on_close = opts.on_close,
  }, Float)
  self.buf = vim.api.nvim_create_buf(false, true)
  vim.bo[self.buf].bufhidden = "wipe"
  vim.bo[self.buf].filetype = "markdown"
  local width = size()
  self.win = vim.api.nvim_open_win(self.buf, opts.enter ~= false, {
    relative = "cursor",
    row = 1,
    col = 0,
    width = width,
    height = 1,
    style = "minimal",
    border = config.options.window.border,
    noautocmd = true,
  })
  vim.wo[self.win].wrap = true
  vim.wo[self.win].linebreak = true
  self:refresh()

  local k = config.options.window.keymaps
  local function map(lhs, fn, desc)
    if lhs then
      vim.keymap.set("n", lhs, fn, { buffer = self.buf, nowait = true, desc = desc })
    end
  end
  map(k.close, function()
    self:close()
  end, "Ember: close")
  map("<Esc>", function()
    self:close()
  end, "Ember: close")
  if self.target then
    map(k.replace, function()
      act(self, "replace")
    end, "Ember: replace the text with the result")
    map(k.insert, function()
      act(self, "insert")
    end, "Ember: insert the result below the text")
    map(k.yank, function()
      act(self, "yank")
    end, "Ember: yank the result")
  end
  vim.api.nvim_create_autocmd("WinClosed", {
    pattern = tostring(self.win),
    once = true,
    callback = function()
      self.win = nil
      if self.on_close then
        self.on_close()
      end
      text.release(self.target)
    end,
  })
  M.last = self
  return self
end

return M
