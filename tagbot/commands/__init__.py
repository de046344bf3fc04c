"""The `tagbot` CLI, one module per area; tagbot/cli.py assembles them."""
