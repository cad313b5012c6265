--- Neovim as a user sees it: a real Neovim with its terminal UI, run inside a terminal (the
--- driver's :terminal, a libvterm screen) and typed into through the pty, as keys from a keyboard.
--- The driver (the headless Neovim that runs the spec) reads the screen as text, and asks the child
--- over its --listen socket what only Neovim knows (its mode, buffer text, messages).
---
--- A watcher polls the child's mode and the screen all along: a hit-enter prompt ("Press ENTER or
--- type command to continue", mode "r") would swallow the user's next key, so every case fails if
--- one was ever seen, and every line the command line showed is kept for the case to check.
local T = {}
T.__index = T

local NVIM = vim.v.progpath

T.COLUMNS = 100
T.LINES = 30

--- Start a Neovim in a terminal. opts: { dir, file, setup (table for require("ember").setup()),
--- init (extra Lua lines for the init file), statusline (string, optional) }.
function T.start(opts)
  local self = setmetatable({ prompts = {}, cmdlines = {}, statuslines = {} }, T)
  local dir = opts.dir
  vim.fn.mkdir(dir, "p")
  local root = vim.fn.fnamemodify(debug.getinfo(1, "S").source:sub(2), ":p:h:h")
  local init = dir .. "/init.lua"
  local lines = {
    ("vim.opt.rtp:prepend(%q)"):format(root),
    "vim.o.laststatus = 2",
    "vim.o.shortmess = vim.o.shortmess .. 'I'",
    "vim.o.swapfile = false",
    -- The column in the statusline tells the driver that the screen shows a keystroke's effect.
    ("vim.o.statusline = %q"):format(opts.statusline or "%f col=%c%=%{v:lua.require'ember'.activity()}"),
    ("require('ember').setup(vim.json.decode(%q))"):format(vim.json.encode(opts.setup or {})),
  }
  vim.list_extend(lines, opts.init or {})
  vim.fn.writefile(lines, init)
  self.sock = dir .. "/nvim.sock"
  os.remove(self.sock)
  -- The driver's own window is the terminal's size.
  vim.o.columns = T.COLUMNS
  vim.o.lines = T.LINES + 2
  vim.cmd("silent! only")
  vim.cmd("enew!")
  self.term_buf = vim.api.nvim_get_current_buf()
  local cmd = { NVIM, "-u", init, "-i", "NONE", "-n", "--listen", self.sock }
  if opts.file then
    table.insert(cmd, opts.file)
  end
  self.job = vim.fn.jobstart(cmd, {
    term = true,
    cwd = dir,
    env = { TERM = "xterm-256color", COLORTERM = "" },
    on_exit = function(_, code)
      self.exit_code = code
    end,
  })
  assert(self.job > 0, "could not start Neovim in a terminal")
  self.H.wait(function()
    return vim.uv.fs_stat(self.sock) ~= nil
  end, 10000, "the child's socket")
  self.ch = vim.fn.sockconnect("pipe", self.sock, { rpc = true })
  self.H.wait(function()
    return self:screen_text():find("col=", 1, true)
  end, 10000, "the child's first screen")
  self:watch()
  return self
end

--- The screen, one string per row (trailing blanks removed).
function T:screen()
  local rows = vim.api.nvim_buf_get_lines(self.term_buf, 0, -1, false)
  -- The terminal buffer also holds scrollback above the screen: keep the last LINES rows.
  local first = math.max(1, #rows - T.LINES + 1)
  local out = {}
  for i = first, #rows do
    table.insert(out, (rows[i]:gsub("%s+$", "")))
  end
  while #out < T.LINES do
    table.insert(out, "")
  end
  return out
end

function T:screen_text()
  return table.concat(self:screen(), "\n")
end

--- The command line (the last row) and the statusline (the row above it).
function T:cmdline()
  local s = self:screen()
  return s[#s]
end

function T:statusline()
  local s = self:screen()
  return s[#s - 1]
end

--- Ask the child (nvim API). Fails the case if a hit-enter prompt is up: the child would not answer.
function T:call(method, ...)
  return vim.fn.rpcrequest(self.ch, method, ...)
end

function T:lua(code, ...)
  return self:call("nvim_exec_lua", code, { ... })
end

function T:mode()
  return self:call("nvim_get_mode")
end

--- Type `keys` (raw terminal bytes: "\27" is <Esc>, "\r" <Enter>).
function T:type(keys)
  self:check_prompt()
  vim.fn.chansend(self.job, keys)
  self.H.sleep(0)
end

--- Poll the child's mode and the screen while the case runs.
function T:watch()
  self.timer = vim.uv.new_timer()
  self.timer:start(0, 20, vim.schedule_wrap(function()
    if not self.ch or self.stopped then
      return
    end
    local ok, mode = pcall(vim.fn.rpcrequest, self.ch, "nvim_get_mode")
    local text = self:screen_text()
    if ok and type(mode) == "table" and mode.mode:sub(1, 1) == "r" then
      table.insert(self.prompts, "mode " .. mode.mode .. ":\n" .. text)
    elseif text:find("Press ENTER", 1, true) then
      table.insert(self.prompts, text)
    end
    local cl, sl = self:cmdline(), self:statusline()
    if self.cmdlines[#self.cmdlines] ~= cl then
      table.insert(self.cmdlines, cl)
    end
    if self.statuslines[#self.statuslines] ~= sl then
      table.insert(self.statuslines, sl)
    end
  end))
end

function T:check_prompt()
  if #self.prompts > 0 then
    error("a hit-enter prompt was shown:\n" .. self.prompts[1], 2)
  end
end

--- Wait until the screen matches `pattern` (plain text); returns the screen.
function T:wait_screen(text, timeout, what)
  return self.H.wait(function()
    local s = self:screen_text()
    return s:find(text, 1, true) and s
  end, timeout or 10000, what or ("%q on the screen"):format(text))
end

--- The child's :messages.
function T:messages()
  return self:call("nvim_exec2", "messages", { output = true }).output
end

--- Quit the child (its VimLeavePre stops the daemon) and stop watching.
function T:stop()
  self.stopped = true
  if self.timer then
    self.timer:stop()
    self.timer:close()
    self.timer = nil
  end
  pcall(vim.fn.rpcnotify, self.ch, "nvim_command", "qa!")
  self.H.wait(function()
    return self.exit_code ~= nil
  end, 10000, "the child to quit")
  pcall(vim.fn.chanclose, self.ch)
  vim.cmd("silent! bwipe! " .. self.term_buf)
end

return T
