--- Inline completion: fill in the middle at the cursor, shown as ghost text (extmarks).
---
--- Every request gets a generation number. Typing, moving or leaving insert mode bumps it and
--- cancels the request in flight ($/cancelRequest), so a reply that still arrives (a daemon may
--- finish a request before it sees the cancel) is recognised as stale and never shown.
--- Every request also carries the buffer's URI as its `supersede` key: a new request for the same
--- buffer replaces one still in flight in the daemon itself (which answers the old one -32800),
--- so a burst of requests never queues work nobody will read.
---
--- Typing through: when the user types the next characters of the suggestion, the rest stays on
--- screen at once (the daemon answers the next request from the same suggestion, so the redraw
--- matches). Accept-word and accept-line insert part of it and keep showing the rest.
--- Feedback: `completion/feedback` tells the daemon, by the result's `completion_id`, that a
--- suggestion was shown, accepted (whole, or typed through to its end), partly accepted (a word,
--- a line, or characters typed through) or dismissed; the daemon only counts it locally.
local config = require("ember.config")
local context = require("ember.context")
local daemon = require("ember.daemon")
local log = require("ember.log")
local util = require("ember.util")

local M = {}

local ns = vim.api.nvim_create_namespace("ember_ghost")
local group = vim.api.nvim_create_augroup("ember_complete", { clear = true })

local st = {
  gen = 0,
  req = nil, ---@type ember.Request|nil
  req_pos = nil, -- { buf, row, col } the request in flight was made for
  timer = nil, ---@type uv.uv_timer_t|nil
  -- col: where the text goes; ccol: the cursor column it was made for (they differ in normal mode)
  -- id: the result's completion_id; typed: characters of it typed through or partly accepted
  -- since it was shown; after: the line's text right of `col` when it was shown.
  ghost = nil, ---@type { buf: integer, row: integer, col: integer, ccol: integer, text: string, tick: integer, id: string|nil, typed: integer, after: string }|nil
  mapped = {}, -- lhs we mapped in insert mode -> true
  attached = false,
}
M._state = st

local function in_insert()
  return vim.api.nvim_get_mode().mode:sub(1, 1) == "i"
end

local function cursor()
  local pos = vim.api.nvim_win_get_cursor(0)
  return vim.api.nvim_get_current_buf(), pos[1], pos[2]
end

-- The prefix window's start moves in steps this long (bytes), so it stays put while the user
-- types: the daemon then reuses the KV state of everything before the edit (PROTOCOL.md).
M.WINDOW_STEP = 1024

--- Text before and after (row, col): the prefix from a line start at most `max_prefix` bytes back,
--- on a `WINDOW_STEP` boundary (so it does not slide with every keystroke); the suffix up to
--- `max_suffix` bytes, cut at a line end, so that the model sees whole lines.
function M.context(buf, row, col, max_prefix, max_suffix)
  local count = vim.api.nvim_buf_line_count(buf)
  local here = vim.api.nvim_buf_get_offset(buf, row - 1) + col
  local earliest = math.max(0, here - max_prefix)
  if earliest > 0 then
    earliest = earliest + (M.WINDOW_STEP - earliest % M.WINDOW_STEP) % M.WINDOW_STEP
  end
  local first = row - 1
  while first > 0 and vim.api.nvim_buf_get_offset(buf, first - 1) >= earliest do
    first = first - 1
  end
  local last = math.min(count, row + max_suffix)
  local before = vim.api.nvim_buf_get_lines(buf, first, row, false)
  local after = vim.api.nvim_buf_get_lines(buf, row - 1, last, false)
  local current = before[#before] or ""
  before[#before] = current:sub(1, col)
  after[1] = current:sub(col + 1)
  local prefix = table.concat(before, "\n")
  local suffix = table.concat(after, "\n")
  if #prefix > max_prefix then -- one line longer than the window: keep its end
    prefix = prefix:sub(-max_prefix)
  end
  if #suffix > max_suffix then
    local cut = suffix:sub(1, max_suffix)
    suffix = cut:match("^(.*)\n") or cut
  end
  return prefix, suffix
end

--- Tell the daemon what became of a completion (nothing without an id or a running daemon).
---@param event "shown"|"accepted"|"partial"|"dismissed"
local function feedback(id, event, chars)
  if id then
    daemon.notify("completion/feedback", { completion_id = id, event = event, accepted_chars = chars })
  end
end

--- Take the ghost text off the screen. Unless `silent`, its outcome is reported: partly accepted
--- when some of it was typed through or accepted by word/line, else dismissed.
local function clear_ghost(silent)
  local g = st.ghost
  st.ghost = nil
  if g and vim.api.nvim_buf_is_valid(g.buf) then
    vim.api.nvim_buf_clear_namespace(g.buf, ns, 0, -1)
  end
  if g and not silent then
    if g.typed > 0 then
      feedback(g.id, "partial", g.typed)
    else
      feedback(g.id, "dismissed")
    end
  end
end

local function stop_timer()
  if st.timer then
    st.timer:stop()
  end
end

--- Cancel the request in flight, if any (its reply, should one still come, is then stale).
local function cancel_request()
  st.gen = st.gen + 1
  if st.req then
    daemon.cancel(st.req)
    st.req = nil
    st.req_pos = nil
  end
end

--- Drop the suggestion, the request in flight and a pending debounced request.
function M.dismiss()
  stop_timer()
  cancel_request()
  clear_ghost()
end

function M.visible()
  local g = st.ghost
  if not g or not vim.api.nvim_buf_is_valid(g.buf) then
    return false
  end
  local buf, row, col = cursor()
  return buf == g.buf and row == g.row and col == g.ccol and vim.b[buf].changedtick == g.tick
end

--- The suggestion on screen, or nil.
function M.suggestion()
  return M.visible() and st.ghost.text or nil
end

local function draw(buf, row, col, s)
  vim.api.nvim_buf_clear_namespace(buf, ns, 0, -1)
  local lines = vim.split(s, "\n", { plain = true })
  local opts = {
    virt_text = { { lines[1], "EmberGhost" } },
    virt_text_pos = "inline",
    hl_mode = "combine",
  }
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], "EmberGhost" } })
    end
  end
  vim.api.nvim_buf_set_extmark(buf, ns, row - 1, col, opts)
end

local function line_after(buf, row, col)
  return (vim.api.nvim_buf_get_lines(buf, row - 1, row, false)[1] or ""):sub(col + 1)
end

--- Show `s` (the result `id`) at the cursor. A result with the id already on screen (the daemon
--- answered from the suggestion being typed through) continues it: no second "shown".
local function show(buf, row, col, ccol, s, id)
  local prev = st.ghost
  local same = prev and id and prev.id == id
  clear_ghost(same)
  draw(buf, row, col, s)
  st.ghost = {
    buf = buf, row = row, col = col, ccol = ccol, text = s, tick = vim.b[buf].changedtick, id = id,
    typed = same and prev.typed or 0, after = line_after(buf, row, col),
  }
  if not same then
    feedback(id, "shown")
  end
  vim.api.nvim_exec_autocmds("User", { pattern = "EmberCompletionShown", modeline = false, data = { text = s, completion_id = id } })
end

--- Keep showing what is left of the suggestion after `n` bytes of it went into the buffer (typed,
--- or accepted by word or line), the cursor now at (row, col). Returns false when nothing is left.
local function advance(n, row, col)
  local g = st.ghost
  local done = g.text:sub(1, n)
  local rest = g.text:sub(n + 1)
  g.typed = g.typed + vim.fn.strchars(done)
  if rest == "" then
    return false
  end
  g.text, g.row, g.col, g.ccol = rest, row, col, col
  g.tick = vim.b[g.buf].changedtick
  draw(g.buf, row, col, rest)
  return true
end

--- The buffer's `supersede` key: its URI, or a per-buffer key for a buffer without a name.
function M.supersede_key(buf)
  if vim.api.nvim_buf_get_name(buf) == "" then
    return "nvim-buffer:" .. buf
  end
  return vim.uri_from_bufnr(buf)
end

--- Ask for a completion at the cursor now.
---@param opts { manual: boolean|nil }|nil manual: report errors and empty results to the user
function M.request(opts)
  opts = opts or {}
  M.attach()
  stop_timer()
  -- A suggestion still valid at the cursor (being typed through) stays until the answer replaces it.
  if not M.visible() then
    clear_ghost()
  end
  local replaced, replaced_buf = st.req, st.req_pos and st.req_pos.buf
  st.gen = st.gen + 1
  st.req = nil
  st.req_pos = nil
  local buf, row, col = cursor()
  local ccol = col
  if not in_insert() then
    -- In normal mode the cursor sits on a character; at the end of a line, complete after it.
    local line = vim.api.nvim_buf_get_lines(buf, row - 1, row, false)[1] or ""
    if col + 1 >= #line then
      col = #line
    end
  end
  local o = config.options.complete
  local prefix, suffix = M.context(buf, row, col, o.max_prefix_chars, o.max_suffix_chars)
  local gen = st.gen
  local tick = vim.b[buf].changedtick
  -- Workspace context goes first; to a daemon this request starts, right after it.
  local was_running = daemon.is_running()
  context.before_complete()
  st.req_pos = { buf = buf, row = row, col = ccol, tick = tick }
  st.req = daemon.request("complete", {
    prefix = prefix,
    suffix = suffix,
    max_tokens = o.max_tokens,
    temperature = o.temperature,
    stop = o.stop,
    model = o.model,
    supersede = M.supersede_key(buf),
    language = vim.bo[buf].filetype ~= "" and vim.bo[buf].filetype:sub(1, 64) or nil,
    path = util.buf_path(buf),
  }, function(err, result)
    if gen ~= st.gen then
      return -- superseded
    end
    st.req = nil
    st.req_pos = nil
    if err then
      if opts.manual then
        util.report("complete", err)
      else
        log.warn("completion failed: %s", util.error_text(err))
      end
      return
    end
    local s = type(result) == "table" and result.text or ""
    local cbuf, crow, cc = cursor()
    if cbuf ~= buf or vim.b[buf].changedtick ~= tick or crow ~= row or cc ~= ccol then
      return -- the cursor or the text moved on meanwhile
    end
    if type(s) ~= "string" or s == "" then
      clear_ghost()
      if opts.manual then
        util.notify("no completion here")
      end
      return
    end
    local id = type(result.completion_id) == "string" and result.completion_id or nil
    show(buf, row, col, ccol, s, id)
  end)
  if not was_running then
    context.flush()
  end
  if replaced then
    if st.req and replaced_buf == buf then
      daemon.forget(replaced) -- the new request, already sent, superseded it in the daemon
    else
      daemon.cancel(replaced)
    end
  end
  return st.req
end

--- Insert the suggestion at the cursor. Returns false when there is none.
--- Insert `piece` (the start of the suggestion) at it and put the cursor after it.
local function insert(g, piece)
  local lines = vim.split(piece, "\n", { plain = true })
  vim.api.nvim_buf_set_text(g.buf, g.row - 1, g.col, g.row - 1, g.col, lines)
  local end_row = g.row + #lines - 1
  local end_col = (#lines == 1 and g.col or 0) + #lines[#lines]
  vim.api.nvim_win_set_cursor(0, { end_row, end_col })
  return end_row, end_col
end

function M.accept()
  if not M.visible() then
    clear_ghost()
    return false
  end
  local g = st.ghost
  clear_ghost(true)
  cancel_request()
  insert(g, g.text)
  feedback(g.id, "accepted", g.typed + vim.fn.strchars(g.text))
  return true
end

--- The suggestion's next word: spaces (line breaks too), then a run of word characters or of
--- other non-blank ones.
function M.next_word(text)
  return text:match("^%s*[%w_]+") or text:match("^%s*[^%w_%s]+") or text
end

--- The rest of the suggestion's current line; when that is empty (the suggestion continues on the
--- next line), the line break and the next line.
function M.next_line(text)
  local line = text:match("^[^\n]*")
  if line == "" then
    return text:match("^\n[^\n]*") or text
  end
  return line
end

--- Accept part of the suggestion (`pick(text)` says which start of it) and keep showing the rest.
local function accept_part(pick)
  if not M.visible() then
    clear_ghost()
    return false
  end
  local g = st.ghost
  cancel_request()
  local piece = pick(g.text)
  local chars = vim.fn.strchars(piece)
  local row, col = insert(g, piece)
  if advance(#piece, row, col) then
    feedback(g.id, "partial", chars)
  else
    clear_ghost(true)
    feedback(g.id, "accepted", g.typed)
  end
  return true
end

--- Insert the suggestion's next word; false when there is none.
function M.accept_word()
  return accept_part(M.next_word)
end

--- Insert the rest of the suggestion's current line; false when there is none.
function M.accept_line()
  return accept_part(M.next_line)
end

local function auto_allowed(buf)
  return config.auto_enabled(buf)
end

--- A buffer where automatic completion applies was opened (or got its filetype): start the daemon
--- and load the model now, so that the first suggestion comes at warm latency. Other buffers start
--- nothing.
function M.maybe_warm(buf)
  buf = buf or vim.api.nvim_get_current_buf()
  -- Only a file: an empty buffer (Neovim started without a file) may never be typed in.
  if
    config.options.complete.warm
    and vim.api.nvim_buf_is_loaded(buf)
    and vim.api.nvim_buf_get_name(buf) ~= ""
    and auto_allowed(buf)
  then
    daemon.warm()
    return true
  end
  return false
end

--- After an edit: when it only typed the suggestion's next characters on its line, keep showing
--- the rest (true). An edit of our own (accept word/line) left the ghost valid already.
local function typed_through()
  local g = st.ghost
  if not g or not in_insert() or not vim.api.nvim_buf_is_valid(g.buf) then
    return false
  end
  local buf, row, col = cursor()
  if buf ~= g.buf or row ~= g.row then
    return false
  end
  if vim.b[buf].changedtick == g.tick then
    return col == g.ccol
  end
  local line = vim.api.nvim_buf_get_lines(buf, row - 1, row, false)[1] or ""
  local n = col - g.col
  if n <= 0 or n > #g.text or line:sub(g.col + 1, col) ~= g.text:sub(1, n) or line:sub(col + 1) ~= g.after then
    return false
  end
  if not advance(n, row, col) then
    -- Typed to its end: the whole suggestion is in the buffer.
    clear_ghost(true)
    feedback(g.id, "accepted", g.typed)
    return false
  end
  return true
end

local function on_text_changed()
  -- TextChangedI waits for the typeahead to be empty: after fast typing it can come after a key
  -- that asked for a completion (a mapping of ember.complete()), whose request is then already for
  -- this text. It stays.
  local p, buf0, row0, col0 = st.req_pos, cursor()
  if st.req and p and p.buf == buf0 and p.row == row0 and p.col == col0 and p.tick == vim.b[buf0].changedtick then
    return
  end
  stop_timer()
  local kept = typed_through()
  if not kept then
    clear_ghost()
  end
  local buf = vim.api.nvim_get_current_buf()
  if not auto_allowed(buf) then
    cancel_request()
    return
  end
  -- The request in flight is now for older text: its answer is not shown (gen), but it is not
  -- cancelled either: the next request carries the same `supersede` key, so the daemon replaces
  -- it, or answers from it when the keystrokes typed its text.
  st.gen = st.gen + 1
  st.timer = st.timer or vim.uv.new_timer()
  st.timer:start(config.options.complete.debounce_ms, 0, vim.schedule_wrap(function()
    if in_insert() and vim.api.nvim_get_current_buf() == buf then
      M.request()
    end
  end))
end

-- Moving the cursor away makes the suggestion and the request in flight useless; a debounced
-- request still to come reads the cursor when it fires, so it stays.
-- An edit moves the cursor too (CursorMovedI comes before TextChangedI): that case is left to
-- on_text_changed, which knows whether the edit typed the suggestion.
local function on_cursor_moved()
  local buf, row, col = cursor()
  local g = st.ghost
  if g and not (g.buf == buf and g.row == row and g.ccol == col) and vim.b[buf].changedtick == g.tick then
    clear_ghost()
  end
  local p = st.req_pos
  if st.req and p and not (p.buf == buf and p.row == row and p.col == col) and vim.b[buf].changedtick == p.tick then
    cancel_request()
  end
end

local function action_rhs(a, fallback)
  return function()
    if M.visible() then
      return ("<Cmd>lua require('ember.complete').%s()<CR>"):format(a.fn)
    end
    return fallback
  end
end

-- Insert-mode actions: their function and description. A key set in `complete.keymaps` falls back
-- to itself when no suggestion is showing; the <Plug> mappings (plugin/ember.lua) to nothing.
M.actions = {
  accept = { fn = "accept", desc = "accept the suggestion" },
  accept_word = { fn = "accept_word", desc = "accept the suggestion's next word" },
  accept_line = { fn = "accept_line", desc = "accept the suggestion's current line" },
  dismiss = { fn = "dismiss", desc = "dismiss the suggestion" },
}

--- The right-hand side of an expr mapping that runs action `name`, or gives `fallback` without a
--- suggestion.
function M.action_rhs(name, fallback)
  return action_rhs(M.actions[name], fallback)
end

local function map_keys()
  for lhs in pairs(st.mapped) do
    pcall(vim.keymap.del, "i", lhs)
  end
  st.mapped = {}
  local o = config.options.complete
  local k = o.keymaps
  for name, a in pairs(M.actions) do
    local lhs = k[name]
    if lhs == false and o.default_keymaps then
      lhs = config.default_keymaps[name]
    end
    if lhs then
      vim.keymap.set("i", lhs, action_rhs(a, lhs), { expr = true, desc = "Ember: " .. a.desc })
      st.mapped[lhs] = true
    end
  end
end

--- Install the autocommands (once) and the keymaps (again after each setup()).
function M.attach(remap)
  context.attach()
  if not st.attached then
    st.attached = true
    vim.api.nvim_create_autocmd("TextChangedI", { group = group, callback = on_text_changed })
    vim.api.nvim_create_autocmd({ "CursorMovedI", "CursorMoved" }, { group = group, callback = on_cursor_moved })
    vim.api.nvim_create_autocmd({ "InsertLeave", "BufLeave" }, { group = group, callback = M.dismiss })
    -- Scheduled: at startup the file's BufEnter comes before its filetype is known.
    vim.api.nvim_create_autocmd({ "BufEnter", "FileType" }, { group = group, callback = function(ev)
      vim.schedule(function()
        if ev.buf == vim.api.nvim_get_current_buf() then
          M.maybe_warm(ev.buf)
        end
      end)
    end })
    map_keys()
  elseif remap then
    map_keys()
  end
  if remap then -- setup(): the buffer already open may need the model (scheduled: see above)
    vim.schedule(function()
      M.maybe_warm()
    end)
  end
end

return M
