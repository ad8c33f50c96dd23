"""imgsim's library: the model, the store, the vector index and the services that tie them."""
