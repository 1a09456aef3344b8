"""`personalize-client`'s commands, one module per group; each `cmd_*(args, settings)` returns an exit code."""
