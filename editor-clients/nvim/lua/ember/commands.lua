--- :Ember {subcommand} [args]: parsing, dispatch and command-line completion.
local M = {}

local function tasks()
  return require("ember.tasks")
end

---@type table<string, { run: fun(cmd: table), desc: string, complete: (fun(arglead: string): string[])|nil }>
M.subcommands = {
  summarize = { desc = "summarize the selection or paragraph", run = function(c) tasks().summarize(c) end },
  translate = {
    desc = "translate the selection or paragraph [into LANG]",
    run = function(c) tasks().translate(c) end,
    complete = function()
      return { "English", "French", "German", "Spanish", "Italian", "Portuguese", "Dutch", "Japanese", "Chinese", "Korean" }
    end,
  },
  classify = {
    desc = "score the selection or paragraph against LABELS...",
    run = function(c) tasks().classify(c) end,
    complete = function()
      return require("ember.config").options.classify.labels or { "positive", "negative", "neutral" }
    end,
  },
  ask = { desc = "ask a question about the selection or buffer", run = function(c) tasks().ask(c) end },
  tokens = { desc = "count the tokens of the selection or buffer", run = function(c) tasks().tokens(c) end },
  complete = {
    desc = "ask for an inline completion at the cursor",
    run = function()
      require("ember.complete").request({ manual = true })
    end,
  },
  status = { desc = "show the daemon's models, memory and queue", run = function() tasks().status() end },
  restart = { desc = "restart the daemon", run = function() tasks().restart() end },
  log = { desc = "open the log file", run = function() tasks().log() end },
}

--- Completion for `:Ember <Tab>` and the arguments of some subcommands.
function M.complete(arglead, cmdline, _)
  local words = vim.split(cmdline:gsub("^%S*%s*", "", 1), "%s+", { trimempty = false })
  -- words[#words] is the word being typed; the subcommand is the first
  local function filter(list)
    return vim.tbl_filter(function(s)
      return vim.startswith(s, arglead)
    end, list)
  end
  if #words <= 1 then
    local names = vim.tbl_keys(M.subcommands)
    table.sort(names)
    return filter(names)
  end
  local sub = M.subcommands[words[1]]
  if sub and sub.complete then
    return filter(sub.complete(arglead))
  end
  return {}
end

--- Run `:Ember` with the command info of nvim_create_user_command.
function M.run(cmd)
  local name = cmd.fargs[1]
  if not name then
    local names = vim.tbl_keys(M.subcommands)
    table.sort(names)
    require("ember.util").notify("subcommands: " .. table.concat(names, ", "))
    return
  end
  local sub = M.subcommands[name]
  if not sub then
    require("ember.util").error(("unknown subcommand %q (try :Ember <Tab>)"):format(name))
    return
  end
  local info = { range = cmd.range, line1 = cmd.line1, line2 = cmd.line2, fargs = vim.list_slice(cmd.fargs, 2), bang = cmd.bang }
  sub.run(info)
end

return M
