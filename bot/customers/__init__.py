"""Customers and their relations with staff: contacts, the sync from WeCom, the customer card."""
