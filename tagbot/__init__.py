"""The composition root: the `tagbot` command, its subcommands and the demo."""
