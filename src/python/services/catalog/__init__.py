"""The catalog service: products and prices."""
