"""The control surface of a running daemon: request models, the manual-order resolver, and (built on them) the
control service, its HTTP server and the operator CLI's client (issue #9)."""
