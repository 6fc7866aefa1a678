"""The notifications service: what the shop would tell customers about their orders."""
