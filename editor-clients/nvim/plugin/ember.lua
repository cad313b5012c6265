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

-- :[range]EmberAsk [question]: ask about the selection (the buffer without a range).
vim.api.nvim_create_user_command("EmberAsk", function(cmd)
  require("ember.tasks").ask({ range = cmd.range, line1 = cmd.line1, line2 = cmd.line2, fargs = cmd.fargs })
end, { nargs = "*", range = true, desc = "Ember: ask a question about the selection or buffer" })
-- <Plug>(ember-ask): in visual mode about the selection, in normal mode about the buffer.
vim.keymap.set("x", "<Plug>(ember-ask)", ":EmberAsk<CR>", { silent = true, desc = "Ember: ask about the selection" })
vim.keymap.set("n", "<Plug>(ember-ask)", "<Cmd>EmberAsk<CR>", { desc = "Ember: ask about the buffer" })

-- Insert-mode <Plug> mappings for inline suggestions (:help ember-mappings); no key is mapped to
-- them here. Without a suggestion they do nothing.
for name, plug in pairs({
  accept = "<Plug>(ember-accept)",
  accept_word = "<Plug>(ember-accept-word)",
  accept_line = "<Plug>(ember-accept-line)",
  dismiss = "<Plug>(ember-dismiss)",
}) do
  vim.keymap.set("i", plug, function()
    return require("ember.complete").action_rhs(name, "")()
  end, { expr = true, desc = "Ember: " .. name:gsub("_", " ") .. " (inline suggestion)" })
end
