--- The statusline component: where the plugin's own state shows (daemon starting, model loading,
--- restarting after a crash, stopped), then the model and the buffer's token count. Nothing here
--- starts the daemon, except the token count (opts.tokens, on by default) once it is shown.
local config = require("ember.config")
local daemon = require("ember.daemon")

local M = {}

---@param opts { tokens: boolean|nil }|nil tokens: false leaves the token count out
function M.text(opts)
  opts = opts or {}
  local d = daemon._state
  if d.status == "failed" then
    return "Ember: stopped (:Ember restart)"
  end
  if d.status == "restarting" then
    return "Ember: restarting · the daemon " .. (d.restart_note or "exited")
  end
  local loading = require("ember.progress").statusline()
  if loading then
    return loading
  end
  if opts.tokens ~= false then
    local tokens = require("ember.tokens")
    tokens.activate()
    local c = tokens.get()
    if c then
      return ("%s · %d tok"):format(daemon.label(c.model), c.count)
    end
  end
  if not config.options.progress then
    return ""
  end
  if d.status == "starting" then
    return "Ember: starting"
  end
  if d.status == "running" and opts.tokens == false then
    local model = daemon.completion_model()
    return model and ("Ember: " .. daemon.label(model)) or "Ember"
  end
  return ""
end

return M
