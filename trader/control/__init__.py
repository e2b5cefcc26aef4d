"""The control surface of a running daemon: request models, the manual-order resolver, the control service and its
HTTP API, and the operator CLI's client and commands (issue #9)."""
