"""The web API: a thin FastAPI layer over the `index` library."""
