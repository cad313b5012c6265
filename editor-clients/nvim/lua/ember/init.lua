--- Ember for Neovim: summarize, translate, classify, count tokens and complete code with a
--- local model, through the Ember daemon (JSON-RPC 2.0 over stdio).
local M = {}

--- Configure the plugin (see :help ember-options). Calling it again applies the new options; a
--- changed `cmd` restarts the daemon.
---@param opts table|nil
function M.setup(opts)
  local config = require("ember.config")
  local merged, problems = config.resolve(opts)
  if #problems > 0 then
    require("ember.util").warn("setup():\n  " .. table.concat(problems, "\n  "))
  end
  config.options = merged
  require("ember.daemon").restart_if_changed()
  require("ember.complete").attach(true)
end

--- For your statusline (see :help ember-statusline): what the plugin is doing ("Ember: loading
--- SmolLM2-135M-Instruct 40%", "Ember: restarting ..."), else "<model> · <n> tok" for the current
--- buffer. `opts.tokens = false` leaves the token count out (it starts the daemon to count).
---@param opts { tokens: boolean|nil }|nil
function M.statusline(opts)
  return require("ember.statusline").text(opts)
end

--- The statusline text without the token count: what the plugin is doing, else the model's
--- name once the daemon runs. Starts nothing. Same as statusline({ tokens = false }), for
--- `%{v:lua.require'ember'.activity()}` (a `}` cannot appear inside `%{...}`).
function M.activity()
  return require("ember.statusline").text({ tokens = false })
end

-- Lua entry points of the commands; `cmd` is optional ({ range, line1, line2, fargs }).
function M.summarize(cmd)
  return require("ember.tasks").summarize(cmd)
end

function M.translate(cmd)
  return require("ember.tasks").translate(cmd)
end

function M.classify(cmd)
  return require("ember.tasks").classify(cmd)
end

function M.tokens(cmd)
  return require("ember.tasks").tokens(cmd)
end

function M.status()
  return require("ember.tasks").status()
end

function M.restart()
  return require("ember.tasks").restart()
end

--- Ask for an inline completion at the cursor now.
function M.complete()
  return require("ember.complete").request({ manual = true })
end

--- Insert the inline suggestion; false when there is none (for your own <Tab> mapping).
function M.accept()
  return require("ember.complete").accept()
end

--- Insert the suggestion's next word; false when there is none.
function M.accept_word()
  return require("ember.complete").accept_word()
end

--- Insert the rest of the suggestion's current line; false when there is none.
function M.accept_line()
  return require("ember.complete").accept_line()
end

function M.dismiss()
  return require("ember.complete").dismiss()
end

--- Whether an inline suggestion is showing at the cursor.
function M.has_suggestion()
  return require("ember.complete").visible()
end

--- Send any request to the daemon: `callback(err, result)`; see :help ember-lua.
function M.request(method, params, callback, opts)
  return require("ember.daemon").request(method, params, callback, opts)
end

return M
