"""Decode heads of the MMSeg family (one per file)."""
