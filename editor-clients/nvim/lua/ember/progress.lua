--- `ember/progress`: a model is being downloaded, converted or loaded.
---
--- Progress is the plugin's own business, so it never goes to the message area (it would print
--- over what the user types): it shows in require("ember").statusline() (see
--- :help ember-statusline), and every notification fires `User EmberProgress` (data: the params)
--- for progress plugins such as fidget.nvim. Only a failed load, which the user has to act on,
--- is a message.
local config = require("ember.config")
local daemon = require("ember.daemon")
local util = require("ember.util")

local M = {}

local verbs = {
  download = "downloading",
  convert = "converting",
  load = "loading",
  quantize = "quantizing",
}

-- model -> the last step shown { phase, percent, text }
M.active = {}

--- The name to show for the model of a progress notification: its own (`label`), else its
--- config name.
local function name_of(p)
  if type(p.label) == "string" and p.label ~= "" then
    return p.label
  end
  return daemon.label(p.model)
end

local function describe(p)
  local parts = { ("%s %s"):format(verbs[p.phase] or tostring(p.phase), name_of(p)) }
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
  if type(p.model) == "string" and type(p.label) == "string" and p.label ~= "" then
    daemon.learn_labels({ { name = p.model, label = p.label } })
  end
  local model = tostring(p.model)
  local shown = M.active[model]
  if p.phase == "ready" then
    M.active[model] = nil
    if shown then
      daemon.changed()
    end
  elseif p.phase == "error" then
    M.active[model] = nil
    daemon.changed()
    util.error(("model %s: %s"):format(name_of(p), p.message or "loading failed"))
  else
    local pct = type(p.percent) == "number" and math.floor(p.percent) or nil
    if not (shown and shown.phase == p.phase and shown.percent == pct and pct ~= nil) then
      M.active[model] = { phase = p.phase, percent = pct, text = describe(p) }
      daemon.changed()
    end
  end
  -- After the state changed, so that a handler sees the statusline as it is now.
  vim.api.nvim_exec_autocmds("User", { pattern = "EmberProgress", modeline = false, data = p })
end

--- "Ember: loading <model> 40%" while a model loads (unless `progress` is off), else nil.
function M.statusline()
  if not config.options.progress then
    return nil
  end
  local _, step = next(M.active)
  return step and ("Ember: " .. step.text) or nil
end

daemon.subscribe("ember/progress", M.handle)

return M
