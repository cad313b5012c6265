--- The daemon process: spawn, initialize, requests, notifications, crash restarts and shutdown.
---
--- vim.lsp.rpc is used as a plain Content-Length JSON-RPC client (Ember is not LSP). Two of its
--- habits shape this module: a -32800 (cancelled) reply never reaches the callback, and no
--- callback runs when the process dies. So every request is tracked here, cancelled requests are
--- forgotten at once, and requests still open when the daemon exits are failed by this module.
local config = require("ember.config")
local log = require("ember.log")
local util = require("ember.util")

local M = {}

M.version = "0.1.0"

---@class ember.Request
---@field id integer request id on the wire
---@field method string
---@field spawn integer which daemon process it was sent to
---@field callback fun(err: table|nil, result: any)|nil
---@field on_stream fun(delta: string, index: integer)|nil
---@field done boolean

local state = {
  client = nil, ---@type vim.lsp.rpc.PublicClient|nil
  spawn = 0, -- bumped on every spawn; messages from older processes are ignored
  status = "stopped", ---@type "stopped"|"starting"|"running"|"restarting"|"failed"
  cmd = nil, ---@type string[]|nil the command the current process was started with
  info = nil, -- the initialize result
  init_error = nil,
  pending = {}, ---@type table<integer, ember.Request>
  crashes = {}, -- uv.now() of recent crashes
  restart_timer = nil,
  exited = {}, -- spawn -> true once that process has exited
  last_exit = nil, -- { code, signal } of the last unexpected exit
  subscribers = {}, -- method -> list of functions(params)
  failure = nil, -- why the daemon is not running when status is "failed"
  restart_note = nil, -- why a restart is under way, for the statusline
  labels = {}, -- config name -> the model's own name (`label`), as the daemon reported it
  warmed = {}, -- model -> the spawn it was loaded in ahead of use (models/load)
}

M._state = state

function M.status()
  return state.status
end

--- The initialize result of the running daemon (nil until it answered).
function M.info()
  return state.info
end

function M.is_running()
  return state.client ~= nil and not state.client.is_closing()
end

--- Call `fn(params)` for every notification `method` from the daemon.
function M.subscribe(method, fn)
  state.subscribers[method] = state.subscribers[method] or {}
  table.insert(state.subscribers[method], fn)
end

local function finish(req, err, result)
  if req.done then
    return
  end
  req.done = true
  if state.pending[req.id] == req then
    state.pending[req.id] = nil
  end
  if req.callback then
    local ok, e = pcall(req.callback, err, result)
    if not ok then
      log.error("callback of %s failed: %s", req.method, e)
      util.error(("internal error handling the %s reply: %s"):format(req.method, e))
    end
  end
end

local function fail_pending(code, message)
  local pending = state.pending
  state.pending = {}
  for _, req in pairs(pending) do
    finish(req, { code = code, message = message })
  end
end

local function on_notification(spawn, method, params)
  if spawn ~= state.spawn then
    return
  end
  if method == "ember/stream" and type(params) == "table" then
    local req = state.pending[params.id]
    if req and not req.done and req.on_stream and type(params.delta) == "string" then
      local ok, e = pcall(req.on_stream, params.delta, params.index)
      if not ok then
        log.error("stream handler of %s failed: %s", req.method, e)
      end
    end
  end
  for _, fn in ipairs(state.subscribers[method] or {}) do
    local ok, e = pcall(fn, params)
    if not ok then
      log.error("handler of %s failed: %s", method, e)
    end
  end
end

local schedule_restart

--- Why a process ended, as a person says it: "was killed by signal 9" or "exited with code 3".
function M.exit_reason(code, signal)
  if type(signal) == "number" and signal ~= 0 then
    return ("was killed by signal %d"):format(signal)
  end
  return ("exited with code %s"):format(tostring(code))
end

--- Let statusline components redraw (the state shown by require("ember").statusline() changed).
function M.changed()
  vim.api.nvim_exec_autocmds("User", { pattern = "EmberStatus", modeline = false })
  pcall(vim.cmd.redrawstatus, { bang = true })
end

local function on_exit(spawn, code, signal)
  state.exited[spawn] = true
  vim.schedule(function()
    if spawn ~= state.spawn then
      return -- a process we replaced or stopped on purpose
    end
    state.client = nil
    state.info = nil
    require("ember.progress").active = {}
    local why = M.exit_reason(code, signal)
    log.error("daemon %s unexpectedly (code %s, signal %s)", why, code, signal)
    state.last_exit = { code = code, signal = signal, reason = why }
    -- The restart is scheduled before the pending requests fail, so that a request's error
    -- message (shown to the user) and the restart (statusline) describe the same state.
    schedule_restart(why)
    fail_pending(util.codes.DaemonExited, ("the daemon %s before it answered"):format(why))
    if state.status == "failed" then
      util.error(state.failure) -- after the requests' own errors: it says what to do next
    end
  end)
end

function schedule_restart(how)
  local r = config.options.restart
  local now = vim.uv.now()
  state.crashes = vim.tbl_filter(function(t)
    return now - t < r.window_ms
  end, state.crashes)
  table.insert(state.crashes, now)
  local n = #state.crashes
  if n > r.max_retries then
    state.status = "failed"
    state.failure = ("the daemon %s (%d crash%s within %d s); not restarting it: see :Ember log, then :Ember restart"):format(
      how,
      n,
      n == 1 and "" or "es",
      math.ceil(r.window_ms / 1000)
    )
    log.error("giving up after %d crashes", n)
    M.changed()
    return
  end
  local delay = r.delay_ms * 2 ^ (n - 1)
  state.status = "restarting"
  -- Restarting is the plugin's own business: the statusline says so, no message interrupts.
  state.restart_note = ("%s; restarting (%d of %d)"):format(how, n, r.max_retries)
  log.info("the daemon %s; restarting in %d ms (crash %d of %d)", how, delay, n, r.max_retries)
  M.changed()
  state.restart_timer = vim.defer_fn(function()
    state.restart_timer = nil
    if state.status == "restarting" then
      M.start()
    end
  end, delay)
end

local function cancel_restart_timer()
  if state.restart_timer then
    pcall(function()
      state.restart_timer:stop()
      state.restart_timer:close()
    end)
    state.restart_timer = nil
  end
end

local function spawn_cmd(cmd, log_path)
  if vim.fn.has("win32") == 1 then
    return cmd -- stderr then goes to Neovim's LSP log instead
  end
  -- The shell hands the daemon its stderr as an append-mode file: nothing to pump, no pipe that
  -- could fill up, and `exec` keeps the daemon's pid.
  return vim.list_extend({ "/bin/sh", "-c", 'exec "$@" 2>>"$0"', log_path }, cmd)
end

--- Start the daemon if it is not running. Returns true when a process is (now) running.
function M.start()
  if M.is_running() then
    return true
  end
  cancel_restart_timer()
  local cmd = vim.deepcopy(config.options.cmd)
  if vim.fn.executable(cmd[1]) ~= 1 then
    state.status = "failed"
    state.failure = ("`%s` is not executable; install the daemon or set `cmd` in require('ember').setup()"):format(cmd[1])
    util.error(state.failure)
    return false
  end
  -- Requests sent to a process that died before its exit was handled can no longer be answered.
  fail_pending(util.codes.DaemonExited, "the daemon exited before it answered")
  local log_path = log.prepare()
  state.spawn = state.spawn + 1
  local spawn = state.spawn
  log.info("starting %s", table.concat(cmd, " "))
  require("ember.progress") -- subscribes to ember/progress
  M.ensure_leave_hook()
  local ok, client = pcall(vim.lsp.rpc.start, spawn_cmd(cmd, log_path), {
    notification = function(method, params)
      on_notification(spawn, method, params)
    end,
    on_error = function(code, err)
      if spawn == state.spawn then
        log.error("rpc error %s: %s", vim.lsp.rpc.client_errors[code] or code, vim.inspect(err))
      end
    end,
    on_exit = function(code, signal)
      on_exit(spawn, code, signal)
    end,
  }, { env = config.options.env })
  if not ok then
    state.status = "failed"
    state.failure = ("could not start `%s`: %s"):format(table.concat(cmd, " "), client)
    log.error(state.failure)
    util.error(state.failure)
    return false
  end
  state.client = client
  state.cmd = cmd
  state.status = "starting"
  M.changed()
  state.info = nil
  state.init_error = nil
  state.failure = nil
  M.request("initialize", {
    process_id = vim.fn.getpid(),
    client_info = { name = "ember.nvim", version = M.version },
  }, function(err, result)
    if err then
      state.init_error = err
      log.error("initialize failed: %s", util.error_text(err))
      if err.code ~= util.codes.DaemonExited then -- a crash has its own message
        util.report("starting the daemon", err)
      end
      return
    end
    state.info = result
    M.learn_labels(result.models)
    state.status = "running"
    state.restart_note = nil
    M.changed()
    if state.want_warm then -- asked for before initialize answered, or before a restart
      M.warm()
    end
    log.info("daemon ready: %s", vim.inspect(result, { newline = " ", indent = "" }))
    vim.api.nvim_exec_autocmds("User", { pattern = "EmberReady", modeline = false, data = result })
  end)
  return true
end

---@class ember.RequestOpts
---@field on_stream? fun(delta: string, index: integer) receives `ember/stream` deltas
---@field start? boolean start the daemon if needed (default true)

--- Send a request. `callback(err, result)` runs exactly once, unless the request is cancelled
--- first (then it never runs). Returns the request, or nil when it could not be sent (the
--- callback has then already been called with the reason).
---@param method string
---@param params table|nil
---@param callback fun(err: table|nil, result: any)|nil
---@param opts ember.RequestOpts|nil
---@return ember.Request|nil
function M.request(method, params, callback, opts)
  opts = opts or {}
  local function refuse(message)
    if callback then
      callback({ code = util.codes.DaemonUnavailable, message = message }, nil)
    end
    return nil
  end
  if not M.is_running() then
    if state.status == "failed" and state.failure then
      return refuse(state.failure)
    end
    if opts.start == false or not M.start() then
      return refuse(state.failure or "the daemon is not running")
    end
  end
  local client = assert(state.client)
  local req = { method = method, spawn = state.spawn, callback = callback, on_stream = opts.on_stream, done = false }
  local sent, id = client.request(method, params, function(err, result)
    if req.spawn == state.spawn and not req.done then
      finish(req, err, result)
    end
  end)
  if not sent then
    return refuse("could not write to the daemon")
  end
  req.id = id
  state.pending[id] = req
  return req
end

--- Stop waiting for `req` and ask the daemon to drop it. Its callback will not run.
---@param req ember.Request|nil
function M.cancel(req)
  if not req or req.done then
    return
  end
  req.done = true
  if state.pending[req.id] == req then
    state.pending[req.id] = nil
  end
  if req.spawn == state.spawn and M.is_running() then
    state.client.notify("$/cancelRequest", { id = req.id })
  end
end

--- Stop waiting for `req` without telling the daemon: for a request that a newer one with the
--- same `supersede` key replaced there (the daemon answers it -32800, which never reaches us).
---@param req ember.Request|nil
function M.forget(req)
  if req and not req.done then
    req.done = true
    if state.pending[req.id] == req then
      state.pending[req.id] = nil
    end
  end
end

function M.notify(method, params)
  if M.is_running() then
    return state.client.notify(method, params)
  end
  return false
end

--- Stop the daemon: `shutdown` then `exit` (or only close the connection to a shared daemon).
---@param opts { wait: boolean|nil }|nil wait: block (up to ~2 s) until the process is gone
function M.stop(opts)
  opts = opts or {}
  cancel_restart_timer()
  local client, spawn = state.client, state.spawn
  -- From here on this process's exit is expected: bump the spawn so its callbacks are ignored.
  state.spawn = state.spawn + 1
  state.client = nil
  state.info = nil
  state.status = "stopped"
  state.crashes = {}
  state.restart_note = nil
  require("ember.progress").active = {}
  M.changed()
  fail_pending(util.codes.DaemonStopped, "the daemon was stopped")
  if not client or client.is_closing() then
    return
  end
  log.info("stopping the daemon")
  local function kill()
    if not state.exited[spawn] and not client.is_closing() then
      client.terminate()
    end
  end
  if config.shutdown_on_exit() then
    client.request("shutdown", nil, function()
      client.notify("exit")
    end)
  else
    kill()
  end
  if opts.wait then
    vim.wait(2000, function()
      return state.exited[spawn] == true
    end, 10)
    kill()
  else
    vim.defer_fn(kill, 3000)
  end
end

--- Stop the daemon when Neovim quits (installed with the first start).
function M.ensure_leave_hook()
  if state.leave_hook then
    return
  end
  state.leave_hook = vim.api.nvim_create_autocmd("VimLeavePre", {
    group = vim.api.nvim_create_augroup("ember_daemon", { clear = true }),
    callback = function()
      M.stop({ wait = true })
    end,
  })
end

function M.restart()
  M.stop()
  state.crashes = {}
  state.status = "stopped"
  state.failure = nil
  return M.start()
end

--- Restart only if the running daemon was started with another command than the options say.
function M.restart_if_changed()
  if state.client and state.cmd and not vim.deep_equal(state.cmd, config.options.cmd) then
    log.info("cmd changed; restarting")
    M.restart()
  elseif state.status == "failed" then
    state.status = "stopped"
    state.failure = nil
  end
end

--- Remember the `label` of each model entry in `models` (from initialize and daemon/status).
function M.learn_labels(models)
  if type(models) ~= "table" then
    return
  end
  for _, m in ipairs(models) do
    if type(m) == "table" and type(m.name) == "string" and type(m.label) == "string" and m.label ~= "" then
      state.labels[m.name] = m.label
    end
  end
end

--- The model's own name ("SmolLM2-135M-Instruct") for a config name ("default"), once the daemon
--- reported it; else the config name.
function M.label(name)
  if name == nil then
    return nil
  end
  name = tostring(name)
  return state.labels[name] or name
end

--- The model inline completion uses: `complete.model`, else the configured model whose `tasks`
--- include "complete" (initialize), else nil (the daemon picks).
function M.completion_model()
  local o = config.options.complete.model
  if o then
    return o
  end
  local models = state.info and state.info.models
  for _, m in ipairs(type(models) == "table" and models or {}) do
    if type(m) == "table" and type(m.tasks) == "table" and vim.tbl_contains(m.tasks, "complete") then
      return m.name
    end
  end
  return nil
end

--- Start the daemon and load the completion model now (`models/load`), once per daemon process,
--- so the first suggestion does not wait for them. Load progress goes to the statusline; a failure
--- goes to the log (the first completion reports it again if it matters).
function M.warm()
  state.want_warm = true
  local function load()
    local model = M.completion_model()
    if not model or state.warmed[model] == state.spawn then
      return
    end
    state.warmed[model] = state.spawn
    log.info("loading %s ahead of the first completion", model)
    M.request("models/load", { model = model }, function(err)
      -- Not retried on the next buffer (that would repeat the failure on every switch); the
      -- first completion asks again and reports it.
      if err then
        log.warn("models/load %s failed: %s", model, util.error_text(err))
      end
    end)
  end
  if state.info then
    load()
    return
  end
  if state.status == "failed" then
    return
  end
  -- Until initialize answers, which model completes is not known: the answer loads it.
  if not M.is_running() then
    M.start()
  end
end

--- A snapshot of the client's view, for :Ember status and :checkhealth.
function M.client_state()
  local n = 0
  for _ in pairs(state.pending) do
    n = n + 1
  end
  return {
    status = state.status,
    cmd = state.cmd or config.options.cmd,
    pending = n,
    restarts = #state.crashes,
    last_exit = state.last_exit,
    failure = state.failure,
    info = state.info,
    log_file = log.path(),
  }
end

return M
