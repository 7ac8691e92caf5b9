"""wxy_hw."""
