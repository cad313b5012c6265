"""The per-user shared daemon: one Service on a Unix socket.

`paths` finds and checks the socket folder and owns the instance lock, `server` is the daemon,
`launch` starts, finds and stops it, `bridge` is `ember connect`. The CLI subcommands live in
ember/cli/shared.py. Only `server` imports the service (models, torch); everything else stays light
so that clients start fast.
"""
