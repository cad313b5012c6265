"""JSON-RPC dispatch: the envelope, the server, and the thin method handlers."""
