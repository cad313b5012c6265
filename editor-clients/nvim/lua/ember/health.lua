--- :checkhealth ember
local M = {}

local function fmt_bytes(n)
  if type(n) ~= "number" then
    return tostring(n)
  end
  return ("%.0f MB"):format(n / 1e6)
end

function M.check()
  local health = vim.health
  local config = require("ember.config")
  local daemon = require("ember.daemon")

  health.start("Neovim")
  if vim.fn.has("nvim-0.10") == 1 then
    health.ok(("Neovim %s"):format(tostring(vim.version())))
  else
    health.error("Neovim 0.10 or newer is required (vim.lsp.rpc, inline virtual text)")
    return
  end
  local _, problems = config.resolve(config.options)
  if #problems == 0 then
    health.ok("options are valid")
  else
    for _, p in ipairs(problems) do
      health.warn(p)
    end
  end

  health.start("Daemon")
  local cmd = config.options.cmd
  local exe = vim.fn.exepath(cmd[1])
  if exe == "" then
    health.error(("`%s` is not executable"):format(cmd[1]), {
      "Install the daemon (pip install ember, or scripts/setup.sh in a checkout)",
      "or set `cmd` in require('ember').setup({ cmd = { '/path/to/ember', 'serve' } })",
    })
    return
  end
  health.ok(("`%s` found: %s"):format(cmd[1], exe))
  health.info(("command: %s"):format(table.concat(cmd, " ")))
  health.info(("log file: %s"):format(require("ember.log").path()))

  if daemon.status() == "failed" then
    daemon.restart()
  else
    daemon.start()
  end
  local ok = vim.wait(30000, function()
    local s = daemon._state
    return s.info ~= nil or s.init_error ~= nil or s.status == "failed" or s.status == "restarting"
  end, 50)
  local info = daemon.info()
  if not info then
    local s = daemon._state
    local why = s.init_error and require("ember.util").error_text(s.init_error)
      or s.failure
      or (not ok and "no answer to `initialize` within 30 s")
      or "the daemon exited"
    health.error("the daemon did not answer `initialize`: " .. why, { "See :Ember log" })
    return
  end
  local server = type(info.server) == "table" and info.server or {}
  health.ok(("the daemon answers: %s %s, protocol %s, pid %s"):format(
    tostring(server.name or "ember"),
    tostring(server.version or "?"),
    tostring(info.protocol_version or "?"),
    tostring(info.pid or "?")
  ))

  health.start("Models")
  local status, err
  daemon.request("daemon/status", nil, function(e, r)
    err, status = e, r
  end)
  vim.wait(10000, function()
    return status ~= nil or err ~= nil
  end, 50)
  if not status then
    health.warn("`daemon/status` failed: " .. (err and require("ember.util").error_text(err) or "no answer"))
    return
  end
  local models = status.models
  local loaded = {}
  if type(models) == "table" then
    for key, m in pairs(models) do
      if type(m) == "table" then
        local name = m.name or (type(key) == "string" and key) or "?"
        if type(m.label) == "string" and m.label ~= "" and m.label ~= name then
          name = ("%s (%s)"):format(m.label, name)
        end
        if m.loaded ~= false then
          table.insert(loaded, ("%s%s"):format(name, m.memory_bytes and (" (" .. fmt_bytes(m.memory_bytes) .. ")") or ""))
        end
      elseif type(m) == "string" then
        table.insert(loaded, m)
      end
    end
  end
  if #loaded == 0 then
    health.info("no model is loaded yet (they load on first use)")
  else
    table.sort(loaded)
    health.ok("loaded: " .. table.concat(loaded, ", "))
  end
  if type(status.memory) == "table" then
    local m = status.memory
    health.info(("memory: %s"):format(m.rss_bytes and fmt_bytes(m.rss_bytes) or vim.inspect(m, { newline = " ", indent = "" })))
  end
  if status.queue_depth ~= nil then
    local running = status.running
    if type(running) == "table" then
      running = #running == 0 and "none" or table.concat(vim.tbl_map(tostring, running), ", ")
    end
    health.info(("queue: %s waiting; running: %s"):format(tostring(status.queue_depth), tostring(running)))
  end
end

return M
