"""The `tagbot demo` scenario: realistic data for the simulator and the bot."""
