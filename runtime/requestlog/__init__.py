"""requestlog."""
