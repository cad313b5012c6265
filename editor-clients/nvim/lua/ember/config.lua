--- Options: defaults, validation and merging.
---
--- Invalid or unknown options never stop the plugin: each one is reported once with
--- vim.notify and the default is kept, so a typo in one key does not disable the rest.
local M = {}

---@class ember.Options
M.defaults = {
  -- The daemon: `ember serve` runs a private one over stdio; `{ "ember", "connect" }` talks to the
  -- shared daemon (`ember daemon start`).
  cmd = { "ember", "serve" },
  -- Extra environment variables for the daemon process (nil: inherit).
  env = nil,
  -- Where the daemon's stderr and the plugin's own log lines go (nil: stdpath("log")/ember.log).
  log_file = nil,
  -- Send `shutdown` + `exit` when Neovim quits. nil: yes, unless `cmd` is `ember connect` (the
  -- shared daemon outlives its editors; only the connection is closed then).
  shutdown_on_exit = nil,
  -- Crashes are restarted after `delay_ms` (doubled on each crash) while there were at most
  -- `max_retries` crashes within `window_ms`; then the plugin gives up until `:Ember restart`.
  restart = { max_retries = 3, window_ms = 60000, delay_ms = 500 },
  -- Show the daemon starting, model download/convert/load progress (`ember/progress`) and
  -- restarts in require("ember").statusline(). They never go to the message area.
  progress = true,
  summarize = { form = "paragraph", length = "medium", max_tokens = nil, model = nil },
  translate = {
    target = "English", -- default answer of the "Translate to:" prompt
    source = nil, -- nil: the daemon detects it
    prompt = true, -- ask for the target language when `:Ember translate` has no argument
    action = "replace", -- "replace" | "insert" (below the text) | "preview" (float only)
    max_tokens = nil,
    model = nil,
  },
  -- calibrate: nil sends nothing, so the daemon applies its measured default (docs/classify.md);
  -- true or false forces contextual calibration on or off.
  classify = { labels = nil, calibrate = nil, model = nil },
  -- :Ember ask / :EmberAsk: method "auto" | "extractive" | "generative" (auto: by the model's kind).
  ask = { method = "auto", max_tokens = nil, model = nil },
  tokens = {
    model = nil,
    debounce_ms = 500, -- statusline count: wait this long after the last change
    max_bytes = 1048576, -- larger buffers are not counted for the statusline
  },
  complete = {
    auto = false, -- request a completion automatically while typing in insert mode
    debounce_ms = 300,
    max_tokens = 32,
    temperature = 0,
    stop = nil, -- list of stop sequences, nil: the daemon's default
    max_prefix_chars = 4000,
    max_suffix_chars = 1000,
    model = nil,
    -- Where `auto` applies. nil: every filetype but the prose ones (M.prose_filetypes: markdown,
    -- text, help, gitcommit...); a list: only these; a map { markdown = true, lua = false }:
    -- these turned on or off, the others as with nil. vim.b.ember_complete (true/false) decides
    -- for one buffer.
    filetypes = nil,
    -- Start the daemon and load the completion model as soon as a buffer where `auto` applies is
    -- opened, so that the first suggestion does not wait for them.
    warm = true,
    -- Map the keys of `M.default_keymaps` (insert mode) where `keymaps` below sets none. Off: no
    -- key is mapped; use the <Plug>(ember-...) mappings (:help ember-mappings).
    default_keymaps = false,
    -- Insert-mode keys (false: none). Each falls back to its own key when no suggestion shows.
    keymaps = {
      accept = false, -- e.g. "<M-l>": accept the whole suggestion
      accept_word = false, -- e.g. "<M-Right>": accept the suggestion's next word
      accept_line = false, -- e.g. "<M-Down>": accept the rest of its current line
      dismiss = false, -- e.g. "<C-]>"
    },
  },
  -- Workspace context for inline completion (`context/add`): text around the cursor of files you
  -- open, around your last edit when you save or leave a buffer, and what you yank. Sent once
  -- inline completion is in use (auto on, or a completion was asked for).
  context = {
    enabled = true,
    lines = 64, -- lines per chunk: a window around the cursor or the last edit
    max_chars = 4096, -- characters per chunk at most (long lines are cut)
    debounce_ms = 200, -- gather chunks this long, then send them in one notification
    max_pending = 16, -- chunks kept while nothing can be sent (oldest dropped)
  },
  window = {
    border = "rounded",
    max_width = 80,
    max_height = 20,
    keymaps = {
      replace = "r", -- replace the source text with the result
      insert = "p", -- insert the result below the source text
      yank = "y", -- yank the result into the unnamed register
      close = "q", -- <Esc> closes too
    },
  },
}

-- Leaves of the options tree. A key whose value is a table of specs is a section.
local function list_of_strings(v)
  if not vim.islist(v) then
    return false
  end
  for _, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then
      return false
    end
  end
  return true
end

local function filetypes_spec(v)
  if list_of_strings(v) then
    return true
  end
  for k, on in pairs(v) do
    if type(k) ~= "string" or type(on) ~= "boolean" then
      return false
    end
  end
  return true
end

local function nonneg_int(v)
  return type(v) == "number" and v >= 0 and math.floor(v) == v
end

local function pos_int(v)
  return type(v) == "number" and v >= 1 and math.floor(v) == v
end

local function one_of(...)
  local allowed = { ... }
  return function(v)
    return vim.tbl_contains(allowed, v)
  end, "one of " .. table.concat(
    vim.tbl_map(function(s)
      return ("%q"):format(s)
    end, allowed),
    ", "
  )
end

local function leaf(types, optional, check, expect)
  return { __leaf = true, types = types, optional = optional, check = check, expect = expect }
end

local function keymap_leaf()
  return leaf({ "string", "boolean" }, true, function(v)
    return v ~= true
  end, "a key (string) or false")
end

M.schema = {
  cmd = leaf("table", false, function(v)
    return #v > 0 and list_of_strings(v)
  end, "a non-empty list of strings"),
  env = leaf("table", true),
  log_file = leaf("string", true),
  shutdown_on_exit = leaf("boolean", true),
  restart = {
    max_retries = leaf("number", false, nonneg_int, "an integer >= 0"),
    window_ms = leaf("number", false, pos_int, "an integer >= 1"),
    delay_ms = leaf("number", false, nonneg_int, "an integer >= 0"),
  },
  progress = leaf("boolean"),
  summarize = {
    form = leaf("string", false, one_of("sentence", "paragraph", "bullets")),
    length = leaf("string", false, one_of("short", "medium", "long")),
    max_tokens = leaf("number", true, pos_int, "an integer >= 1"),
    model = leaf("string", true),
  },
  translate = {
    target = leaf("string", false, function(v)
      return v ~= ""
    end, "a non-empty string"),
    source = leaf("string", true),
    prompt = leaf("boolean"),
    action = leaf("string", false, one_of("replace", "insert", "preview")),
    max_tokens = leaf("number", true, pos_int, "an integer >= 1"),
    model = leaf("string", true),
  },
  classify = {
    labels = leaf("table", true, function(v)
      return #v >= 2 and list_of_strings(v)
    end, "a list of at least 2 labels"),
    calibrate = leaf("boolean", true),
    model = leaf("string", true),
  },
  ask = {
    method = leaf("string", false, one_of("auto", "extractive", "generative")),
    max_tokens = leaf("number", true, pos_int, "an integer >= 1"),
    model = leaf("string", true),
  },
  tokens = {
    model = leaf("string", true),
    debounce_ms = leaf("number", false, nonneg_int, "an integer >= 0"),
    max_bytes = leaf("number", false, pos_int, "an integer >= 1"),
  },
  complete = {
    auto = leaf("boolean"),
    debounce_ms = leaf("number", false, nonneg_int, "an integer >= 0"),
    max_tokens = leaf("number", false, pos_int, "an integer >= 1"),
    temperature = leaf("number", false, function(v)
      return v >= 0 and v <= 5
    end, "a number in [0, 5]"),
    stop = leaf("table", true, list_of_strings, "a list of strings"),
    max_prefix_chars = leaf("number", false, nonneg_int, "an integer >= 0"),
    max_suffix_chars = leaf("number", false, nonneg_int, "an integer >= 0"),
    model = leaf("string", true),
    filetypes = leaf("table", true, filetypes_spec, "a list of filetypes or a map { filetype = true|false }"),
    warm = leaf("boolean"),
    default_keymaps = leaf("boolean"),
    keymaps = {
      accept = keymap_leaf(),
      accept_word = keymap_leaf(),
      accept_line = keymap_leaf(),
      dismiss = keymap_leaf(),
    },
  },
  context = {
    enabled = leaf("boolean"),
    lines = leaf("number", false, pos_int, "an integer >= 1"),
    max_chars = leaf("number", false, pos_int, "an integer >= 1"),
    debounce_ms = leaf("number", false, nonneg_int, "an integer >= 0"),
    max_pending = leaf("number", false, function(v)
      return pos_int(v) and v <= 64
    end, "an integer in [1, 64]"),
  },
  window = {
    border = leaf({ "string", "table" }),
    max_width = leaf("number", false, pos_int, "an integer >= 1"),
    max_height = leaf("number", false, pos_int, "an integer >= 1"),
    keymaps = {
      replace = keymap_leaf(),
      insert = keymap_leaf(),
      yank = keymap_leaf(),
      close = keymap_leaf(),
    },
  },
}

-- vim.validate's positional form is 0.11+, its table form is deprecated there.
local function validate(name, value, types, optional)
  if vim.fn.has("nvim-0.11") == 1 then
    return pcall(vim.validate, name, value, types, optional)
  end
  return pcall(vim.validate, { [name] = { value, types, optional } })
end

local function check_leaf(path, spec, value)
  local ok, err = validate(path, value, spec.types, spec.optional)
  if not ok then
    return false, err
  end
  if value ~= nil and spec.check and not spec.check(value) then
    return false, ("%s: expected %s, got %s"):format(path, spec.expect or "a valid value", vim.inspect(value))
  end
  return true
end

--- Copy `user` onto `base` following `schema`; collect a message for each key that is dropped.
local function merge(base, user, schema, prefix, problems)
  for key, value in pairs(user) do
    local path = prefix .. tostring(key)
    local spec = schema[key]
    if spec == nil then
      table.insert(problems, ("unknown option `%s` (ignored)"):format(path))
    elseif spec.__leaf then
      local ok, err = check_leaf(path, spec, value)
      if ok then
        base[key] = vim.deepcopy(value)
      else
        table.insert(problems, ("invalid option %s (the default is kept)"):format(err))
      end
    elseif type(value) ~= "table" then
      table.insert(problems, ("invalid option %s: expected a table, got %s (the default is kept)"):format(path, type(value)))
    else
      base[key] = base[key] or {}
      merge(base[key], value, spec, path .. ".", problems)
    end
  end
end

--- Validate `user` options and merge them over the defaults.
---@param user table|nil
---@return ember.Options merged, string[] problems
function M.resolve(user)
  local merged = vim.deepcopy(M.defaults)
  local problems = {}
  if user ~= nil and type(user) ~= "table" then
    table.insert(problems, ("setup() expects a table, got %s"):format(type(user)))
    user = nil
  end
  merge(merged, user or {}, M.schema, "", problems)
  return merged, problems
end

-- Inline completion is off by default in these filetypes (prose: a code model's suggestions get in
-- the way there); `complete.filetypes = { markdown = true }` turns one back on.
M.prose_filetypes = {
  "markdown", "text", "help", "gitcommit", "gitrebase", "hgcommit", "svn", "mail", "rst", "asciidoc", "org", "norg",
}

-- The keys `complete.default_keymaps = true` maps (copilot.lua's accept and dismiss keys).
M.default_keymaps = {
  accept = "<M-l>",
  accept_word = "<M-Right>",
  accept_line = "<M-Down>",
  dismiss = "<C-]>",
}

--- Whether automatic inline completion applies to `buf` (`complete.auto`, the filetype rules,
--- vim.b.ember_complete). Special buffers (prompts, terminals, plugin windows) never get it.
function M.auto_enabled(buf)
  local o = M.options.complete
  if not o.auto or vim.bo[buf].buftype ~= "" then
    return false
  end
  local own = vim.b[buf].ember_complete
  if type(own) == "boolean" then
    return own
  end
  local ft = vim.bo[buf].filetype
  local rule = o.filetypes
  if rule ~= nil and vim.islist(rule) and #rule > 0 then
    return vim.tbl_contains(rule, ft)
  end
  if type(rule) == "table" and type(rule[ft]) == "boolean" then
    return rule[ft]
  end
  return not vim.tbl_contains(M.prose_filetypes, ft)
end

-- The options in effect; setup() replaces them. Starts as the defaults so that the plugin also
-- works without setup() (`:Ember` alone).
M.options = vim.deepcopy(M.defaults)

function M.log_file()
  return M.options.log_file or (vim.fn.stdpath("log") .. "/ember.log")
end

function M.shutdown_on_exit()
  local o = M.options
  if o.shutdown_on_exit ~= nil then
    return o.shutdown_on_exit
  end
  return not vim.tbl_contains(o.cmd, "connect")
end

return M
