"""Small shared helpers: device choice, atomic writes, image conversions, model files."""
