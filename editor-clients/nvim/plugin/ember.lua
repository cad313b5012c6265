-- Ember: local models for Neovim. This file only defines :Ember; modules load on first use.
if vim.g.loaded_ember then
  return
end
vim.g.loaded_ember = true

vim.api.nvim_create_user_command("Ember", function(cmd)
  require("ember.commands").run(cmd)
end, {
  nargs = "*",
  range = true,
  desc = "Ember: summarize, translate, classify, tokens, complete, status, restart, log",
  complete = function(...)
    return require("ember.commands").complete(...)
  end,
})
