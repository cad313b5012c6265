--- `ember/progress`: a model is being downloaded, converted or loaded.
---
--- Steps are echoed without filling the message history; the end (ready or error) is a
--- notification. Every notification also fires `User EmberProgress` (data: the params) for
--- progress plugins such as fidget.nvim.
local config = require("ember.config")
local util = require("ember.util")

local M = {}

local verbs = {
  download = "downloading",
  convert = "converting",
  load = "loading",
  quantize = "quantizing",
}

-- model -> the last step shown { phase, percent }
M.active = {}

local function describe(p)
  local parts = { ("%s %s"):format(verbs[p.phase] or tostring(p.phase), tostring(p.model)) }
  if type(p.percent) == "number" then
    table.insert(parts, ("%d%%"):format(math.floor(p.percent)))
  elseif type(p.bytes) == "number" then
    table.insert(parts, ("%.1f MB"):format(p.bytes / 1e6))
  end
  if type(p.message) == "string" and p.message ~= "" then
    table.insert(parts, "· " .. p.message)
  end
  return table.concat(parts, " ")
end

function M.handle(p)
  if type(p) ~= "table" then
    return
  end
  vim.api.nvim_exec_autocmds("User", { pattern = "EmberProgress", modeline = false, data = p })
  local model = tostring(p.model)
  local shown = M.active[model]
  if p.phase == "ready" then
    M.active[model] = nil
    if config.options.progress and shown then
      util.notify(("model %s ready"):format(model))
    end
  elseif p.phase == "error" then
    M.active[model] = nil
    util.error(("model %s: %s"):format(model, p.message or "loading failed"))
  else
    local pct = type(p.percent) == "number" and math.floor(p.percent) or nil
    if shown and shown.phase == p.phase and shown.percent == pct and pct ~= nil then
      return
    end
    M.active[model] = { phase = p.phase, percent = pct, text = describe(p) }
    if config.options.progress then
      vim.api.nvim_echo({ { "Ember: " .. M.active[model].text, "EmberPending" } }, false, {})
    end
  end
end

--- "Ember: loading <model> 40%" while a model loads, else nil.
function M.statusline()
  local _, step = next(M.active)
  return step and ("Ember: " .. step.text) or nil
end

require("ember.daemon").subscribe("ember/progress", M.handle)

return M
