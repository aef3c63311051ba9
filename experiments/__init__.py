"""Binaries that collect data, train models and evaluate them."""
