"""History brought in from files (RR exports, FIT activities) through the live path."""
