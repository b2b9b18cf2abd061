"""History as a parquet dataset: `TABLE/date=YYYY-MM-DD/part-0.parquet` plus `manifest.json`."""
