"""Necks between the ViT and a dense head (one per file)."""
