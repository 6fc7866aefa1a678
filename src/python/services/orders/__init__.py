"""The orders service: order placement and the saga that carries each order to confirmed or cancelled."""
