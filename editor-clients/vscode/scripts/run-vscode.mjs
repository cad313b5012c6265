// Runs the extension's mocha suite inside a real VS Code (code-server) driven by headless Chromium,
// and exits with the suite's exit code. Run it with the toolchain's Node 24 (scripts/toolchain.sh);
// scripts/test-vscode.sh does all of it.
//
//   node run-vscode.mjs --toolchain DIR --ember PATH --artifacts DIR [--vsix FILE] [--timeout S] [--tests FILE]
//
// --tests names the tests module in out/vscode/ (default index.js, the suite; bench.js is the
// first-suggestion benchmark, scripts/bench-first-suggestion.sh).
// Without --vsix the extension is loaded from this folder (extensionDevelopmentPath); with it, the
// .vsix is installed into code-server's extensions folder and the suite runs against that copy.
//
// Everything lives in a fresh temporary folder: code-server's config, user data, extensions,
// workspaces, and the XDG folders and runtime dir of every process it starts (the daemons too).
// Every process started here carries a unique marker in its environment; at the end each one still
// alive is stopped by its pid, children and daemonized grandchildren included, even after a
// failure. On failure, screenshots and the logs (the Ember output channel among them) are copied
// into --artifacts.
//
// The suite talks to this driver through files (see test/vscode/driver.ts): it asks for what only
// a browser can do (click a notification's button, type keys, read the status bar) and gets the
// answer back as a file.
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import { createRequire } from 'node:module';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { format, parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    toolchain: { type: 'string' },
    ember: { type: 'string' },
    artifacts: { type: 'string' },
    vsix: { type: 'string' },
    timeout: { type: 'string', default: '1200' },
    keep: { type: 'boolean', default: false },
    grep: { type: 'string' },
    tests: { type: 'string', default: 'index.js' },
  },
});
for (const required of ['toolchain', 'ember', 'artifacts']) {
  if (!opts[required]) fail(`--${required} is required`);
}
const toolchain = path.resolve(opts.toolchain);
const extensionRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pass = opts.vsix ? 'vsix' : 'dev';
const artifacts = path.resolve(opts.artifacts, pass);
fs.rmSync(artifacts, { recursive: true, force: true });
const deadline = Date.now() + Number(opts.timeout) * 1000;
const require = createRequire(path.join(toolchain, 'tools', 'package.json'));
const { chromium } = require('playwright-core');
const node = path.join(toolchain, 'node', 'bin', 'node');
const codeServer = path.join(toolchain, 'code-server', 'node_modules', 'code-server', 'out', 'node', 'entry.js');

function fail(message) {
  console.error(`run-vscode: ${message}`);
  process.exit(2);
}
const say = (message) => console.log(`run-vscode [${pass}]: ${message}`);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// -- the temporary world ------------------------------------------------------------------------

const marker = `ember-vscode-test-${randomUUID()}`;
const run = fs.mkdtempSync(path.join(os.tmpdir(), 'ember-vscode-'));
const dirs = {
  userData: path.join(run, 'user-data'),
  extensions: path.join(run, 'extensions'),
  channel: path.join(run, 'channel'),
  workspaces: path.join(run, 'workspaces'),
  xdg: path.join(run, 'xdg'),
  runtime: path.join(run, 'xdg', 'runtime'),
};
for (const d of Object.values(dirs)) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
fs.mkdirSync(path.join(dirs.userData, 'User'), { recursive: true });
fs.writeFileSync(path.join(run, 'config.yaml'), 'auth: none\ncert: false\n');
fs.writeFileSync(
  path.join(dirs.userData, 'User', 'settings.json'),
  JSON.stringify(
    {
      'ember.command': path.resolve(opts.ember),
      // A quiet, offline workbench: nothing else competes for the two cores or the screen.
      'workbench.startupEditor': 'none',
      'workbench.tips.enabled': false,
      'workbench.enableExperiments': false,
      'workbench.secondarySideBar.defaultVisibility': 'hidden',
      'chat.disableAIFeatures': true,
      'extensions.autoCheckUpdates': false,
      'extensions.autoUpdate': false,
      'update.mode': 'none',
      'telemetry.telemetryLevel': 'off',
      'git.enabled': false,
      'security.workspace.trust.enabled': false,
      'editor.inlineSuggest.enabled': true,
      'editor.quickSuggestions': { other: false, comments: false, strings: false },
      'editor.suggestOnTriggerCharacters': false,
      'editor.wordBasedSuggestions': 'off',
      'editor.acceptSuggestionOnEnter': 'off',
      'editor.autoClosingBrackets': 'never',
      'editor.autoClosingQuotes': 'never',
      'files.autoSave': 'off',
    },
    null,
    2,
  ),
);
// The suite's host when the extension itself comes from the .vsix: a development extension is
// what makes the workbench run extension tests; this one contributes nothing.
const host = path.join(run, 'test-host');
fs.mkdirSync(host);
fs.writeFileSync(
  path.join(host, 'package.json'),
  JSON.stringify({ name: 'ember-test-host', publisher: 'ember', version: '0.0.0', engines: { vscode: '^1.74.0' } }),
);

const env = {
  ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VSCODE_') && !k.startsWith('EMBER_'))),
  EMBER_VSCODE_TEST_MARKER: marker,
  EMBER_VSCODE_DRIVER_DIR: dirs.channel,
  EMBER_VSCODE_TEST_PASS: pass,
  EMBER_VSCODE_WORKSPACES: dirs.workspaces,
  EMBER_VSCODE_EXTENSION_ROOT: extensionRoot,
  ...(opts.grep ? { EMBER_VSCODE_GREP: opts.grep } : {}),
  // The daemons: no user config, the converted model cache the Python tests use, offline hub.
  XDG_CONFIG_HOME: path.join(dirs.xdg, 'config'),
  XDG_DATA_HOME: path.join(dirs.xdg, 'data'),
  XDG_CACHE_HOME: path.join(dirs.xdg, 'cache'),
  XDG_STATE_HOME: path.join(dirs.xdg, 'state'),
  XDG_RUNTIME_DIR: dirs.runtime,
  HF_HUB_OFFLINE: '1',
  HF_HOME: path.join(dirs.xdg, 'hf'),
  EMBER_DAEMON__CACHE_DIR: path.resolve(process.env.EMBER_TEST_CACHE || path.join(extensionRoot, '../../.ember-cache/test')),
  // Every reply the daemon sends is checked against wire.py/results.py (a mismatch is an error).
  EMBER_CHECK_RESULTS: '1',
  TMPDIR: path.join(run, 'tmp'),
};
fs.mkdirSync(env.TMPDIR);

// -- processes ----------------------------------------------------------------------------------

/** Every live process whose environment carries the marker: ours, wherever it was reparented. */
function markedPids() {
  const pids = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/environ`).includes(`EMBER_VSCODE_TEST_MARKER=${marker}`)) pids.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return pids;
}

function commandLine(pid) {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim();
  } catch {
    return '';
  }
}

function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** SIGTERM each marked process by pid, then SIGKILL what is left after a grace period. */
async function stopMarked() {
  let pids = markedPids();
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const until = Date.now() + 5000;
  while (pids.length > 0 && Date.now() < until) {
    await sleep(100);
    pids = pids.filter(alive);
  }
  for (const pid of markedPids()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const serverLog = fs.createWriteStream(path.join(run, 'code-server.log'));
function startCodeServer(port, workspace) {
  const child = spawn(
    node,
    [
      codeServer,
      '--config', path.join(run, 'config.yaml'),
      '--auth', 'none',
      '--bind-addr', `127.0.0.1:${port}`,
      '--user-data-dir', dirs.userData,
      '--extensions-dir', dirs.extensions,
      '--disable-telemetry',
      '--disable-update-check',
      '--disable-workspace-trust',
      '--disable-getting-started-override',
      '--vscode-option', 'enable-smoke-test-driver',
      workspace,
    ],
    { env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stdout.pipe(serverLog);
  child.stderr.pipe(serverLog);
  return child;
}

function installVsix(vsix) {
  const result = spawnSync(
    node,
    [codeServer, '--user-data-dir', dirs.userData, '--extensions-dir', dirs.extensions, '--install-extension', vsix],
    { env, encoding: 'utf8', timeout: 120_000 },
  );
  if (result.status !== 0) throw new Error(`installing ${vsix} failed:\n${result.stdout}\n${result.stderr}`);
  say(result.stdout.trim().split('\n').at(-1));
}

async function waitHealthy(port, child) {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`code-server exited with ${child.exitCode}; see its log`);
    try {
      if ((await fetch(`http://127.0.0.1:${port}/healthz`)).ok) return;
    } catch {
      // not listening yet
    }
    await sleep(100);
  }
  throw new Error('code-server did not answer /healthz');
}

// -- windows ------------------------------------------------------------------------------------

/**
 * Records the text of every notification the page shows. With the smoke-test driver on, VS Code
 * shows no toasts: notifications appear in the notification center only (the driver opens it).
 */
function recordNotifications() {
  const seen = [];
  window.__emberNotifications = seen;
  // "message [button|button]", as the row shows them.
  const note = () => {
    for (const row of document.querySelectorAll('.notifications-center .monaco-list-row')) {
      const message = row.querySelector('.notification-list-item-message')?.innerText ?? row.innerText;
      const buttons = [...row.querySelectorAll('.notification-list-item-buttons-container .monaco-button')].map((b) => b.innerText.trim());
      const text = `${message.replace(/\s+/g, ' ').trim()}${buttons.length ? ` [${buttons.join('|')}]` : ''}`;
      if (text && !seen.includes(text)) seen.push(text);
    }
  };
  new MutationObserver(note).observe(document, { subtree: true, childList: true, characterData: true });
}

/** Runs `action`, then opens the notification center again if it was open (Escape closes it). */
async function keepingNotifications(page, action) {
  const open = await page.locator('.notifications-center').isVisible();
  try {
    return await action();
  } finally {
    if (open) await showNotifications(page).catch(() => undefined);
  }
}

/** Opens the notification center (the bell in the status bar) unless it is open. */
async function showNotifications(page) {
  const center = page.locator('.notifications-center');
  if (await center.isVisible()) return center;
  await page.locator('[id="status.notifications"] a, [id="status.notifications"]').first().click();
  await center.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT });
  return center;
}

const ACTION_TIMEOUT = 60_000;
const windows = new Map(); // name -> { page, exited }
let browser;
let port;

async function openWindow(name, { tests, folder }) {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.addInitScript(recordNotifications);
  const exited = new Promise((resolve) => {
    page.exposeFunction('codeAutomationExit', (code) => resolve(code));
  });
  await page.exposeFunction('codeAutomationLog', () => undefined); // the workbench's own log: not needed
  page.on('console', (message) => void printConsole(name, message));
  page.on('pageerror', (error) => console.log(`[${name}] page error: ${error.message}`));
  const remote = (p) => `vscode-remote://127.0.0.1:${port}${p}`;
  const developmentPath = opts.vsix ? host : extensionRoot;
  const payload = [
    ['extensionDevelopmentPath', remote(developmentPath)],
    ['extensionTestsPath', remote(path.join(extensionRoot, 'out', 'vscode', tests))],
  ];
  windows.set(name, { page, exited });
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(folder)}&payload=${encodeURIComponent(JSON.stringify(payload))}`);
  return { page, exited };
}

/**
 * The extension host's console (mocha's reporter, the suite's notes) reaches the page's console as
 * `("%c INFO", "color: ...", ...args)`; the workbench's own chatter does not start that way.
 */
async function printConsole(name, message) {
  let args;
  try {
    args = await Promise.all(message.args().map((a) => a.jsonValue()));
  } catch {
    return; // the page went away
  }
  if (typeof args[0] !== 'string' || !/^%c\s*\w+/.test(args[0])) return;
  const text = format(...args.slice(2)).replace(/\s+$/, '');
  if (text && !WORKBENCH_NOISE.test(text)) console.log(text.split('\n').map((l) => `[${name}] ${l}`).join('\n'));
}

/** The workbench's own log lines, which arrive the same way: start-up chatter, the offline gallery. */
const WORKBENCH_NOISE =
  /^(\{|Resolving connection token|Resolved connection token|Creating a socket|\[reconnection-grace-time\]|Updating additional builtin|\[Service Worker\]|\[AgentHost|\[AccountPolicyGate\]|Creation of workbench contribution|Error: Timed out waiting for authentication provider|Failed: getaddrinfo)/;

async function screenshot(page, name) {
  fs.mkdirSync(path.join(artifacts, 'screenshots'), { recursive: true });
  const file = path.join(artifacts, 'screenshots', `${name.replace(/[^\w.-]+/g, '_').slice(0, 120)}.png`);
  await page.screenshot({ path: file }).catch(() => undefined);
  return file;
}

// -- what the suite can ask for -----------------------------------------------------------------

const actions = {
  async screenshot(page, { name }) {
    return screenshot(page, name);
  },

  /** Clicks a button of the notification whose text contains `notification`. */
  async click(page, { notification, button, timeoutMs = ACTION_TIMEOUT }) {
    const center = await showNotifications(page);
    const row = center.locator('.monaco-list-row').filter({ hasText: notification }).first();
    await row.getByRole('button', { name: button, exact: true }).click({ timeout: timeoutMs });
    return true;
  },

  /** Every notification text seen since the window opened, and the ones in the center now. */
  async notifications(page) {
    await showNotifications(page);
    const seen = await page.evaluate(() => window.__emberNotifications ?? []);
    const visible = await page.locator('.notifications-center .notification-list-item-message').allInnerTexts();
    return { seen, visible: visible.map((t) => t.replace(/\s+/g, ' ').trim()) };
  },

  /** Forgets the notifications recorded so far (the suite clears the center with them). */
  async clearNotifications(page) {
    await page.evaluate(() => {
      window.__emberNotifications.length = 0;
    });
    return true;
  },

  /** Opens the notification center, so that notifications shown from now on are recorded. */
  async watchNotifications(page) {
    await showNotifications(page);
    return true;
  },

  /** Waits for the quick input (a pick or an input box), types `text` into it and presses Enter. */
  async quickInput(page, { text }) {
    return keepingNotifications(page, async () => {
      const input = page.locator('.quick-input-widget .quick-input-box input');
      await input.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT });
      await input.fill(text);
      // The list filters as it is typed; Enter takes the first match.
      await page.locator('.quick-input-widget').press('Enter');
      return true;
    });
  },

  /** The text of the status bar entry whose accessible name or id contains `entry`, or null. */
  async statusBar(page, { entry }) {
    return page.evaluate((entry) => {
      for (const item of document.querySelectorAll('.statusbar-item')) {
        const label = item.querySelector('a')?.getAttribute('aria-label') ?? '';
        if (item.id.includes(entry) || label.includes(entry)) {
          return { text: item.innerText.trim(), label, tooltip: item.querySelector('a')?.getAttribute('title') ?? null };
        }
      }
      return null;
    }, entry);
  },

  /** Types into whatever has the focus (the editor), as a user would: keydown, keypress, keyup. */
  async keys(page, { type, press }) {
    if (type) await page.keyboard.type(type, { delay: 30 });
    if (press) await page.keyboard.press(press);
    return true;
  },

  /** The ghost text (inline completion) shown in the editor now, or null. */
  async ghostText(page) {
    return page.evaluate(() => {
      const parts = [...document.querySelectorAll('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text')];
      return parts.length === 0 ? null : parts.map((p) => p.textContent.replace(/\u00a0/g, ' ')).join('\n');
    });
  },

  /** Whether the panel shows the Output view, the channel picked in it, and the lines it shows. */
  async outputPanel(page) {
    return page.evaluate(() => {
      const panel = document.querySelector('.part.panel');
      const select = panel?.querySelector('select.monaco-select-box');
      // Monaco renders spaces as no-break spaces.
      const lines = panel ? [...panel.querySelectorAll('.monaco-editor .view-line')].map((l) => l.textContent.replace(/\u00a0/g, ' ')) : [];
      return {
        visible: Boolean(panel && panel.offsetParent !== null && select),
        channel: select ? select.options[select.selectedIndex]?.textContent ?? null : null,
        text: lines.join('\n'),
      };
    });
  },

  /** The text of a modal dialog, then presses its button `button` (or Escape). */
  async dialog(page, { button }) {
    return keepingNotifications(page, async () => {
      const dialog = page.locator('.monaco-dialog-box');
      await dialog.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT });
      const text = (await dialog.innerText()).replace(/\s+/g, ' ').trim();
      if (button) await dialog.getByRole('button', { name: button, exact: true }).click();
      else await page.keyboard.press('Escape');
      return text;
    });
  },

  /** The labels of the editor's context menu (right click in the active editor), then Escape. */
  async contextMenu(page) {
    return keepingNotifications(page, async () => {
      const editor = page.locator('.editor-group-container.active .monaco-editor .view-lines').first();
      await editor.click({ button: 'right', timeout: ACTION_TIMEOUT });
      const items = page.locator('.monaco-menu .action-item .action-label');
      await items.first().waitFor({ state: 'visible', timeout: ACTION_TIMEOUT });
      const labels = (await items.allInnerTexts()).map((t) => t.trim()).filter(Boolean);
      await page.keyboard.press('Escape');
      return labels;
    });
  },

  /** The Command Palette's entries for `text`, then Escape. */
  async palette(page, { text }) {
    return keepingNotifications(page, async () => {
      await page.keyboard.press('F1');
      const input = page.locator('.quick-input-widget .quick-input-box input');
      await input.waitFor({ state: 'visible', timeout: ACTION_TIMEOUT });
      await input.fill(`>${text}`);
      const rows = page.locator('.quick-input-widget .monaco-list-row');
      await rows.first().waitFor({ state: 'visible', timeout: ACTION_TIMEOUT });
      const labels = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('aria-label') ?? e.textContent ?? ''));
      await page.keyboard.press('Escape');
      return labels;
    });
  },

  async eval(page, { js }) {
    return page.evaluate(js);
  },

  /** Opens another window running `tests` on `folder`; resolves with its exit code. */
  async openWindow(_page, { name, tests, folder }) {
    fs.mkdirSync(folder, { recursive: true });
    const { exited } = await openWindow(name, { tests, folder });
    const code = await exited;
    say(`window "${name}" finished with exit code ${code}`);
    return code;
  },
};

/** Serves the suite's requests: `<id>.request.json` in, `<id>.reply.json` out (written atomically). */
function serveRequests() {
  const busy = new Set();
  const timer = setInterval(() => {
    for (const file of fs.readdirSync(dirs.channel)) {
      if (!file.endsWith('.request.json') || busy.has(file)) continue;
      busy.add(file);
      void (async () => {
        const request = JSON.parse(fs.readFileSync(path.join(dirs.channel, file), 'utf8'));
        const reply = {};
        try {
          const window = windows.get(request.window);
          if (!window) throw new Error(`no window "${request.window}"`);
          const action = actions[request.action];
          if (!action) throw new Error(`no action "${request.action}"`);
          reply.result = (await action(window.page, request.args ?? {})) ?? null;
        } catch (error) {
          reply.error = String(error?.message ?? error).split('\n').slice(0, 6).join('\n');
        }
        const out = path.join(dirs.channel, `${request.id}.reply.json`);
        fs.writeFileSync(`${out}.tmp`, JSON.stringify(reply));
        fs.renameSync(`${out}.tmp`, out);
        fs.rmSync(path.join(dirs.channel, file), { force: true });
        busy.delete(file);
      })();
    }
  }, 50);
  return () => clearInterval(timer);
}

// -- the run ------------------------------------------------------------------------------------

/** Copies the logs a failure needs: the extension's (Ember.log), the extension hosts', code-server's. */
function saveLogs() {
  fs.mkdirSync(path.join(artifacts, 'logs'), { recursive: true });
  const walk = (dir) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith('.log')) {
        const relative = path.relative(path.join(dirs.userData, 'logs'), full).split(path.sep).join('__');
        fs.copyFileSync(full, path.join(artifacts, 'logs', relative));
      }
    }
  };
  if (fs.existsSync(path.join(dirs.userData, 'logs'))) walk(path.join(dirs.userData, 'logs'));
  fs.copyFileSync(path.join(run, 'code-server.log'), path.join(artifacts, 'logs', 'code-server.log'));
  return path.join(artifacts, 'logs');
}

/** The daemons and bridges still running (a daemon started by `ember daemon` is not one of them). */
function runningDaemons() {
  return markedPids()
    .map((pid) => `${pid} ${commandLine(pid)}`)
    .filter((line) => /\bember (serve|connect)\b/.test(line));
}

let exitCode = 1;
let stopServing = () => undefined;
let server;
const cleanups = async () => {
  stopServing();
  await browser?.close().catch(() => undefined);
  await stopMarked();
  server?.kill('SIGKILL');
};
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    say(`${signal}: stopping everything`);
    void cleanups().then(() => process.exit(130));
  });
}

const started = Date.now();
try {
  if (opts.vsix) installVsix(path.resolve(opts.vsix));
  port = await freePort();
  const mainFolder = path.join(dirs.workspaces, 'main');
  fs.mkdirSync(mainFolder);
  server = startCodeServer(port, mainFolder);
  await waitHealthy(port, server);
  say(`code-server on 127.0.0.1:${port} (${Date.now() - started} ms)`);
  const executablePath = fs.readFileSync(path.join(toolchain, 'chromium', 'path'), 'utf8').trim();
  browser = await chromium.launch({
    executablePath,
    env: { ...env, TMPDIR: env.TMPDIR },
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--use-gl=angle', '--use-angle=swiftshader', '--enable-unsafe-swiftshader'],
  });
  stopServing = serveRequests();
  const { page, exited } = await openWindow('main', { tests: opts.tests, folder: mainFolder });
  const code = await Promise.race([exited, sleep(Math.max(0, deadline - Date.now())).then(() => 'timeout')]);
  if (code === 'timeout') {
    say(`the suite did not finish within ${opts.timeout} s`);
    for (const [name, w] of windows) await screenshot(w.page, `timeout-${name}`);
    exitCode = 1;
  } else {
    exitCode = Number(code);
    // The window closed: VS Code deactivated the extension, which stops its daemons.
    let left = runningDaemons();
    for (const until = Date.now() + 10_000; left.length > 0 && Date.now() < until; left = runningDaemons()) await sleep(100);
    if (left.length > 0) {
      say(`daemons still running after the window closed:\n  ${left.join('\n  ')}`);
      exitCode = exitCode || 1;
    }
    if (exitCode !== 0) await screenshot(page, 'at-exit');
  }
} catch (error) {
  say(`failed: ${error?.stack ?? error}`);
  for (const [name, w] of windows) await screenshot(w.page, `error-${name}`);
  exitCode = 1;
} finally {
  await cleanups();
  if (exitCode !== 0) say(`logs and screenshots: ${saveLogs()}`);
  if (!opts.keep) fs.rmSync(run, { recursive: true, force: true });
  else say(`kept ${run}`);
  say(`exit code ${exitCode} after ${Math.round((Date.now() - started) / 1000)} s`);
}
process.exit(exitCode);
