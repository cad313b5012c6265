--- The text a command works on, and putting results back into the buffer.
---
--- A target is pinned with an extmark, so that a reply that arrives seconds later still lands on
--- the right text even when lines above it were added or removed in the meantime.
local M = {}

local ns = vim.api.nvim_create_namespace("ember_target")

---@class ember.Target
---@field buf integer
---@field text string the text when the command ran
---@field mark integer extmark spanning the text
---@field linewise boolean

local function is_blank(line)
  return line:match("^%s*$") ~= nil
end

--- Byte just past the character that starts at byte `col` (0-based) of `line`.
local function char_end(line, col)
  if col >= #line then
    return #line
  end
  local ok, n = pcall(vim.str_utf_end, line, col + 1)
  return col + 1 + (ok and n or 0)
end

local function paragraph(buf, row)
  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  if not lines[row] or is_blank(lines[row]) then
    return nil
  end
  local first, last = row, row
  while first > 1 and not is_blank(lines[first - 1]) do
    first = first - 1
  end
  while last < #lines and not is_blank(lines[last + 1]) do
    last = last + 1
  end
  return first, last
end

--- The text a command applies to: the range it was given (a characterwise visual selection keeps
--- its columns), else `fallback`: "paragraph" (around the cursor) or "buffer".
---@param cmd { range: integer, line1: integer, line2: integer }|nil user command info
---@param fallback "paragraph"|"buffer"
---@return ember.Target|nil, string|nil
function M.target(cmd, fallback)
  local buf = vim.api.nvim_get_current_buf()
  local srow, scol, erow, ecol -- 0-based, end exclusive
  local linewise = true
  if cmd and cmd.range and cmd.range > 0 then
    local l1, l2 = cmd.line1, cmd.line2
    local vs, ve = vim.fn.getpos("'<"), vim.fn.getpos("'>")
    if vim.fn.visualmode() == "v" and vs[2] == l1 and ve[2] == l2 then
      linewise = false
      local last = vim.api.nvim_buf_get_lines(buf, l2 - 1, l2, false)[1] or ""
      srow, scol = l1 - 1, vs[3] - 1
      erow, ecol = l2 - 1, char_end(last, math.min(ve[3] - 1, #last))
    else
      srow, erow = l1 - 1, l2 - 1
    end
  elseif fallback == "buffer" then
    srow, erow = 0, vim.api.nvim_buf_line_count(buf) - 1
  else
    local first, last = paragraph(buf, vim.api.nvim_win_get_cursor(0)[1])
    if not first then
      return nil, "no text here: put the cursor in a paragraph or select some text"
    end
    srow, erow = first - 1, last - 1
  end
  if linewise then
    scol = 0
    ecol = #(vim.api.nvim_buf_get_lines(buf, erow, erow + 1, false)[1] or "")
  end
  local text = table.concat(vim.api.nvim_buf_get_text(buf, srow, scol, erow, ecol, {}), "\n")
  local mark = vim.api.nvim_buf_set_extmark(buf, ns, srow, scol, {
    end_row = erow,
    end_col = ecol,
    right_gravity = false,
    end_right_gravity = true,
  })
  return { buf = buf, text = text, mark = mark, linewise = linewise }
end

--- Where the target's text is now: row, col, end_row, end_col (0-based), or nil if it is gone.
function M.range(t)
  if not vim.api.nvim_buf_is_valid(t.buf) then
    return nil
  end
  local m = vim.api.nvim_buf_get_extmark_by_id(t.buf, ns, t.mark, { details = true })
  if not m[1] then
    return nil
  end
  return m[1], m[2], m[3].end_row, m[3].end_col
end

--- Model output tidied for the buffer: no leading blank lines, no trailing whitespace.
function M.clean(s)
  return (s:gsub("^%s*\n", ""):gsub("%s+$", ""))
end

--- Replace the target's text with `new` as one undoable change.
---@return boolean ok, string|nil why not
function M.replace(t, new)
  local r, c, er, ec = M.range(t)
  if not r then
    return false, "the text is gone (buffer closed or text deleted)"
  end
  local now = table.concat(vim.api.nvim_buf_get_text(t.buf, r, c, er, ec, {}), "\n")
  if now ~= t.text then
    return false, "the text changed since the request; not replacing it"
  end
  vim.api.nvim_buf_set_text(t.buf, r, c, er, ec, vim.split(M.clean(new), "\n", { plain = true }))
  return true
end

-- Filetypes where a blank line is what separates paragraphs (Markdown and its dialects).
M.markdown_filetypes = { "markdown", "rmd", "quarto", "mdx", "pandoc", "vimwiki", "telekasten" }

local function is_markdown(buf)
  for _, ft in ipairs(vim.split(vim.bo[buf].filetype, ".", { plain = true })) do
    if vim.tbl_contains(M.markdown_filetypes, ft) then
      return true
    end
  end
  return false
end

--- Insert `new` below the target's last line, after a blank line, as one undoable change. In
--- Markdown the result becomes its own paragraph: it goes after the end of the paragraph the target
--- ends in (never inside it), with a blank line before it and one after it when text follows.
---@return boolean ok, string|nil why not
function M.insert_below(t, new)
  local r, _, er = M.range(t)
  if not r then
    return false, "the text is gone (buffer closed or text deleted)"
  end
  local lines = vim.split(M.clean(new), "\n", { plain = true })
  table.insert(lines, 1, "")
  local at = er + 1 -- 0-based: the line the result goes above
  if is_markdown(t.buf) then
    local count = vim.api.nvim_buf_line_count(t.buf)
    local function line(i)
      return vim.api.nvim_buf_get_lines(t.buf, i, i + 1, false)[1] or ""
    end
    while at < count and not is_blank(line(at)) do
      at = at + 1
    end
  end
  vim.api.nvim_buf_set_lines(t.buf, at, at, false, lines)
  return true
end

function M.release(t)
  if t and vim.api.nvim_buf_is_valid(t.buf) then
    pcall(vim.api.nvim_buf_del_extmark, t.buf, ns, t.mark)
  end
end

return M
