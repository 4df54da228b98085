"""What people look at: heatmap overlays and the run report."""
