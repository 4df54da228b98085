"""Parts that several methods share: coreset, nearest neighbours, the epoch loop, selection, validation."""
