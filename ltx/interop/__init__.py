"""Import and export of weights in other projects' layouts (diffusers)."""
