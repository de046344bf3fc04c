"""Customers and their relations with staff: contacts, the sync, the contact events, the card."""
