"""What people look at: heatmap overlays, plots, and the pages of test runs and benchmarks (rendering only)."""
