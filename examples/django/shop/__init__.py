"""A small shop: orders, confirmed by a fleet task once they are committed."""
