"""The `tagbot` CLI, one module per area; bot/cli.py assembles them."""
