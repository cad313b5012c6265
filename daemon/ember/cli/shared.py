"""CLI subcommands for the shared daemon: `daemon start|stop|status|run`, `connect`, `call`, `pipe`.

Exit codes of `call`, `pipe` and `daemon`: 0 success; 1 any other failure (an internal error in
the daemon, a lost connection); 2 usage or invalid params (also an unknown method); 3 the daemon
could not be started or reached, or a model/server error (-32001..-32005); 4 the request was
cancelled. `ember daemon status` exits 3 when no daemon runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

EXIT_OK = 0
EXIT_OTHER = 1
EXIT_USAGE = 2
EXIT_DAEMON = 3
EXIT_CANCELLED = 4

GENERATIVE = ("complete", "summarize", "translate")
USAGE_CODES = (-32700, -32600, -32601, -32602)
CANCELLED_CODE = -32800


def exit_code_for(code: int) -> int:
    if code in USAGE_CODES:
        return EXIT_USAGE
    if code == CANCELLED_CODE:
        return EXIT_CANCELLED
    if -32099 <= code <= -32000:  # the server range: model load, input too long, busy, shutting down
        return EXIT_DAEMON
    return EXIT_OTHER


class UsageError(Exception):
    pass


def _err(message: str) -> None:
    sys.stderr.write(f"ember: {message}\n")
    sys.stderr.flush()


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def register(subparsers: Any, add_config_flags: Callable[[argparse.ArgumentParser], None],
             load: Callable[[argparse.Namespace], Any]) -> None:
    def with_load(fn: Callable[..., int]) -> Callable[[argparse.Namespace], int]:
        return lambda args: fn(args, load)

    def config_only(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="PATH",
                       help="TOML config file; it and EMBER_* variables locate the socket folder")

    daemon = subparsers.add_parser("daemon", help="the shared per-user daemon: start, stop, status",
                                   description="One daemon per user on a Unix socket; every client "
                                   "(ember connect, call, pipe) shares its resident models.")
    dsub = daemon.add_subparsers(dest="daemon_command", required=True)
    start = dsub.add_parser("start", help="start the shared daemon in the background")
    add_config_flags(start)
    start.set_defaults(func=with_load(cmd_daemon_start))
    run = dsub.add_parser("run", help="run the shared daemon in the foreground (what start runs)")
    add_config_flags(run)
    run.set_defaults(func=with_load(cmd_daemon_run))
    stop = dsub.add_parser("stop", help="stop the shared daemon (its clients' requests are cancelled)")
    config_only(stop)
    stop.set_defaults(func=cmd_daemon_stop)
    status = dsub.add_parser("status", help="whether the shared daemon runs, its pid, socket and load")
    config_only(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(func=cmd_daemon_status)

    connect = subparsers.add_parser(
        "connect", help="bridge stdin/stdout to the shared daemon (use it instead of `ember serve`)",
        description="Speaks the protocol on stdin/stdout in either framing and relays it to the "
        "shared daemon, starting the daemon (with these configuration flags) when it is not running.")
    add_config_flags(connect)
    connect.add_argument("--parent-pid", type=int, help="exit when this process dies")
    connect.add_argument("--no-start", action="store_true", help="fail instead of starting the daemon")
    connect.set_defaults(func=with_load(cmd_connect))

    call = subparsers.add_parser(
        "call", help="call one method through the shared daemon and print the result",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Params come from --params, then --text, then each --param. Plain output: the "
        "text for complete/summarize/translate/detokenize, the token count for tokenize, "
        "'label<TAB>score' lines for classify, 'text<TAB>label<TAB>start<TAB>end<TAB>score' lines "
        "for entities, JSON otherwise.",
        epilog="examples:\n  git diff | ember call summarize --text -\n"
        "  ember call classify --text great --param labels='[\"good\",\"bad\"]' --json\n"
        "exit codes: 0 ok, 1 other, 2 usage or invalid params, 3 daemon or model error, 4 cancelled")
    call.add_argument("method", help="e.g. summarize, translate, classify, complete, tokenize, daemon/status")
    call.add_argument("--text", metavar="TEXT",
                      help="the text to work on ('-' reads stdin); for complete it is the prompt")
    call.add_argument("--param", metavar="KEY=VALUE", action="append", default=[],
                      help="one param; VALUE is parsed as JSON when it parses, else taken as a string "
                      "(repeatable)")
    call.add_argument("--params", metavar="JSON", help="all params as a JSON object")
    out = call.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the whole result as one line of JSON")
    out.add_argument("--stream", action="store_true",
                     help="print text as it is generated (complete, summarize, translate)")
    config_only(call)
    call.set_defaults(func=cmd_call)

    pipe = subparsers.add_parser(
        "pipe", help="JSON requests on stdin, one per line; replies on stdout, one per line, in order",
        description="Each line is a request object: {\"method\": ..., \"params\": {...}}; \"jsonrpc\" "
        "is optional and \"id\" defaults to the line number. Each reply is one JSON-RPC response line, "
        "in input order. At stdin EOF the requests still running are finished before exiting.")
    pipe.add_argument("--jobs", type=int, default=4, metavar="N",
                      help="requests in flight at once (default 4)")
    config_only(pipe)
    pipe.set_defaults(func=cmd_pipe)


# -- shared helpers ----------------------------------------------------------------------------


def _settings(config: str | None) -> Any:
    from ..config import load_config

    return load_config(config).settings


def _paths(settings: Any) -> Any:
    from ..shared.paths import SharedPaths

    return SharedPaths.resolve(settings.shared.socket_dir)


def _connect(settings: Any, argv: list[str] | None = None, start: bool = True) -> Any:
    from ..shared.launch import ensure_running, log_path

    paths = _paths(settings)
    return ensure_running(paths, argv, log_path(paths, settings.daemon.log_file), start=start)


def _daemon_problems() -> tuple[type[Exception], ...]:
    from ..shared.launch import DaemonUnavailable
    from ..shared.paths import UnsafeSocketDir

    return (DaemonUnavailable, UnsafeSocketDir)


# -- ember daemon ------------------------------------------------------------------------------


def cmd_daemon_run(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from ..huge_pages import restart_with_huge_pages
    from ..logs import quiet_libraries, setup_logging
    from ..shared.server import run_shared

    restart_with_huge_pages()
    loaded = load(args)
    quiet_libraries()
    d = loaded.settings.daemon
    # `daemon start` already points our stderr at the log file: do not write every line twice.
    setup_logging(d.log_level, None if d.log_file and _is_stderr(d.log_file) else d.log_file)
    return run_shared(loaded)


def _is_stderr(path: str) -> bool:
    try:
        a, b = os.fstat(2), os.stat(os.path.expanduser(path))
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def cmd_daemon_start(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from ..client import Client
    from ..shared.launch import config_argv, log_path, state

    loaded = load(args)
    argv = config_argv(loaded)
    paths = _paths(loaded.settings)
    try:
        paths.check()
        before = state(paths)
        if before.running:
            _out(f"ember: the shared daemon is already running (pid {before.pid}, socket {paths.socket})\n")
            if any(a == "--set" for a in argv):
                _err("configuration flags apply when the daemon starts; `ember daemon stop` first")
            return EXIT_OK
        with Client(_connect(loaded.settings, argv)) as client:
            info = client.status()
    except _daemon_problems() as exc:
        _err(str(exc))
        return EXIT_DAEMON
    log = log_path(paths, loaded.settings.daemon.log_file)
    _out(f"ember: shared daemon started (pid {info['pid']}, socket {paths.socket}, log {log})\n")
    return EXIT_OK


def cmd_daemon_stop(args: argparse.Namespace) -> int:
    from ..shared.launch import stop

    paths = _paths(_settings(args.config))
    try:
        pid = stop(paths)
    except _daemon_problems() as exc:
        _err(str(exc))
        return EXIT_DAEMON
    _out("ember: the shared daemon is not running\n" if pid is None
         else f"ember: stopped the shared daemon (pid {pid})\n")
    return EXIT_OK


def cmd_daemon_status(args: argparse.Namespace) -> int:
    from ..client import Client, RpcError
    from ..shared.launch import log_path, state

    settings = _settings(args.config)
    paths = _paths(settings)
    st = state(paths)
    report: dict[str, Any] = {"running": st.running, "pid": st.pid, "socket": str(paths.socket),
                              "log": str(log_path(paths, settings.daemon.log_file)), "status": None}
    if st.running:
        try:
            with Client(_connect(settings, start=False)) as client:
                report["status"] = client.status()
        except (RpcError, *_daemon_problems()) as exc:  # type: ignore[misc]  # a tuple at run time
            report["error"] = str(exc)
    if args.json:
        _out(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        _out(_describe_status(report))
    return EXIT_OK if st.running else EXIT_DAEMON


def _describe_status(report: dict[str, Any]) -> str:
    if not report["running"]:
        return f"ember shared daemon: not running (socket {report['socket']})\n"
    lines = ["ember shared daemon: running", f"  pid:      {report['pid']}",
             f"  socket:   {report['socket']}", f"  log:      {report['log']}"]
    s = report["status"]
    if s is None:
        lines.append(f"  (not answering: {report.get('error', 'starting?')})")
        return "\n".join(lines) + "\n"
    models = ", ".join(f"{m.get('name')} ({m.get('device', '?')}, {m.get('memory_bytes', 0) / 1e6:.0f} MB)"
                       for m in s.get("models", [])) or "none loaded"
    lines += [
        f"  version:  {s.get('version')}, up {s.get('uptime_s')} s",
        f"  clients:  {max(0, s.get('connections', 1) - 1)} besides this one",
        f"  requests: {s.get('requests_served')} served, {s.get('queue_depth')} queued, "
        f"running: {', '.join(s.get('running') or []) or 'nothing'}",
        f"  models:   {models}; {s.get('model_loads')} load(s) since start",
        f"  memory:   {s.get('memory', {}).get('rss_bytes', 0) / 1e6:.0f} MB resident",
    ]
    return "\n".join(lines) + "\n"


# -- ember connect -----------------------------------------------------------------------------


def cmd_connect(args: argparse.Namespace, load: Callable[[argparse.Namespace], Any]) -> int:
    from ..shared.bridge import run_bridge
    from ..shared.launch import config_argv, state

    loaded = load(args)
    argv = config_argv(loaded)
    try:
        paths = _paths(loaded.settings)
        paths.check()
        if any(a == "--set" for a in argv) and state(paths).running:
            _err("the shared daemon is already running; configuration flags apply only when it "
                 "starts (`ember daemon stop` first)")
        sock = _connect(loaded.settings, argv, start=not args.no_start)
    except _daemon_problems() as exc:
        _err(str(exc))
        return EXIT_DAEMON
    return run_bridge(sock, args.parent_pid)


# -- ember call --------------------------------------------------------------------------------


def parse_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def build_params(args: argparse.Namespace, stdin: Any = None) -> dict[str, Any] | None:
    params: dict[str, Any] = {}
    if args.params is not None:
        try:
            params = json.loads(args.params)
        except ValueError as exc:
            raise UsageError(f"--params is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise UsageError("--params must be a JSON object")
    if args.text is not None:
        text = args.text
        if text == "-":
            data = (stdin or sys.stdin.buffer).read()
            text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
        params["prompt" if args.method == "complete" else "text"] = text
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--param {item!r}: expected KEY=VALUE")
        params[key.strip()] = parse_value(value)
    if args.stream and args.method not in GENERATIVE:
        raise UsageError(f"--stream works with {', '.join(GENERATIVE)}, not {args.method}")
    return params or None


def render_plain(method: str, result: Any) -> str:
    """The plain-text rendering of a result (see `ember call --help`)."""
    if result is None:
        return ""
    if method == "tokenize" and isinstance(result, dict):
        return f"{result['count']}\n"
    if method == "classify" and isinstance(result, dict):
        return "".join(f"{s['label']}\t{s['score']:.4f}\n" for s in result["scores"])
    if method == "entities" and isinstance(result, dict):
        return "".join(f"{e['text']}\t{e['label']}\t{e['start']}\t{e['end']}\t{e['score']:.4f}\n"
                       for e in result["entities"])
    if isinstance(result, dict) and isinstance(result.get("text"), str):
        text = result["text"]
        return text if text.endswith("\n") else text + "\n"
    return json.dumps(result, ensure_ascii=False, indent=2) + "\n"


def cmd_call(args: argparse.Namespace) -> int:
    from ..client import Client, RpcError

    try:
        params = build_params(args)
    except UsageError as exc:
        _err(str(exc))
        return EXIT_USAGE
    settings = _settings(args.config)
    streamed: list[str] = []

    def on_delta(delta: str) -> None:
        streamed.append(delta)
        _out(delta)

    try:
        with Client(_connect(settings)) as client:
            result = client.call(args.method, params, on_delta=on_delta if args.stream else None)
    except RpcError as exc:
        if streamed:
            _out("\n")
        _err(f"{exc.message} (code {exc.code})")
        return exit_code_for(exc.code)
    except _daemon_problems() as exc:
        _err(str(exc))
        return EXIT_DAEMON
    if args.json:
        _out(json.dumps(result, ensure_ascii=False) + "\n")
    elif args.stream:
        shown = "".join(streamed)
        text = result.get("text") if isinstance(result, dict) else None
        if isinstance(text, str) and text.startswith(shown):
            _out(text[len(shown):])  # whatever was not streamed (nothing, by the protocol)
            shown = text
        _out("" if shown.endswith("\n") else "\n")
    else:
        _out(render_plain(args.method, result))
    return EXIT_OK


# -- ember pipe --------------------------------------------------------------------------------


def _reply(msg_id: Any, result: Any = None, error: dict[str, Any] | None = None) -> str:
    body: dict[str, Any] = {"jsonrpc": "2.0", "id": msg_id}
    if error is not None:
        body["error"] = error
    else:
        body["result"] = result
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")) + "\n"


def parse_pipe_line(line: bytes, number: int) -> tuple[Any, str, Any] | str:
    """(id, method, params) of one input line, or the finished error reply for a bad line."""
    from ..rpc.nesting import MAX_DEPTH, cut_deep, holds_marker
    from ..wire import valid_request_id

    cut = cut_deep(line)  # as the daemon does: 100,000 levels must not crash the parser
    try:
        msg = json.loads(cut or line)
    except (ValueError, UnicodeDecodeError) as exc:
        return _reply(None, error={"code": -32700, "message": f"Parse error: invalid JSON ({exc})"})
    if not isinstance(msg, dict):
        return _reply(None, error={"code": -32600, "message":
                                   "Invalid Request: expected one request object per line"})
    msg_id = msg.get("id", number)
    if not valid_request_id(msg_id):
        return _reply(None, error={"code": -32600, "message":
                                   'Invalid Request: "id" must be a string, a number or null'})
    if not isinstance(msg.get("method"), str):
        return _reply(msg_id, error={"code": -32600, "message": 'Invalid Request: missing "method"'})
    if cut is not None and holds_marker(msg):
        if holds_marker({k: v for k, v in msg.items() if k != "params"}):
            error = {"code": -32600, "message": f"Invalid Request: nested deeper than {MAX_DEPTH} levels"}
        else:
            error = {"code": -32602, "message": f"params: nested deeper than {MAX_DEPTH} levels"}
        return _reply(msg_id, error=error)
    return msg_id, msg["method"], msg.get("params")


def cmd_pipe(args: argparse.Namespace) -> int:
    import queue

    from ..client import Client, DaemonUnavailable, RpcError

    if args.jobs < 1:
        _err("--jobs must be at least 1")
        return EXIT_USAGE
    settings = _settings(args.config)
    try:
        client = Client(_connect(settings))
    except _daemon_problems() as exc:
        _err(str(exc))
        return EXIT_DAEMON

    slots = threading.Semaphore(args.jobs)
    order: queue.Queue[Any] = queue.Queue()  # replies in input order: str, (id, Call), or None at EOF
    lost = threading.Event()

    def write_in_order() -> None:
        while (item := order.get()) is not None:
            if isinstance(item, str):
                _out(item)
                continue
            msg_id, pending = item
            try:
                line = _reply(msg_id, pending.result())
            except RpcError as exc:
                error = {"code": exc.code, "message": exc.message}
                if exc.data is not None:
                    error["data"] = exc.data
                line = _reply(msg_id, error=error)
            except DaemonUnavailable as exc:
                lost.set()
                line = _reply(msg_id, error={"code": -32603, "message": str(exc)})
            _out(line)

    writer = threading.Thread(target=write_in_order, name="ember-pipe-out", daemon=True)
    writer.start()
    with client:
        for number, line in enumerate(sys.stdin.buffer, start=1):
            if not line.strip():
                continue
            parsed = parse_pipe_line(line, number)
            if isinstance(parsed, str):
                order.put(parsed)
                continue
            msg_id, method, params = parsed
            slots.acquire()
            try:
                pending = client.request(method, params)
            except DaemonUnavailable as exc:
                slots.release()
                lost.set()
                order.put(_reply(msg_id, error={"code": -32603, "message": str(exc)}))
                continue
            pending.future.add_done_callback(lambda _f: slots.release())
            order.put((msg_id, pending))
        order.put(None)  # EOF: the writer finishes every request still in flight
        writer.join()
    if lost.is_set():
        _err("lost the connection to the shared daemon")
        return EXIT_DAEMON
    return EXIT_OK
