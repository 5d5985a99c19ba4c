"""Shipped world models (NAME.ckpt) and their cards (NAME.json): package data."""
