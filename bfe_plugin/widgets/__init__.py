"""Small widgets of the bfe dock; each panel is its own module so new panels plug in."""
