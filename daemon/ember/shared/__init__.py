"""The per-user shared daemon: one Engine on a Unix socket, and the commands that talk to it.

`paths` finds and checks the socket folder and owns the instance lock, `server` is the daemon,
`launch` starts, finds and stops it, `bridge` is `ember connect`, `commands` the CLI subcommands.
Only `server` imports the service (models, torch); everything else stays light so that clients start fast.
"""
