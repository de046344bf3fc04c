"""Data in: orders, interactions and profile attributes from the API or from files."""
