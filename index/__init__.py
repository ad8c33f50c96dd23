"""imgsim's library: the model, the store, the vector index and the services that tie them."""

# The one place the version is written (pyproject.toml reads it from here).
__version__ = "0.1.0"
