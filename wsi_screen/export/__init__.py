"""Writers of the per-slide outputs: QuPath GeoJSON, the zarr cell store, reports."""
