"""Venue models and app drivers for drills: one module per app (copytrader, monitor)."""
