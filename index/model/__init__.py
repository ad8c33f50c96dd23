"""The model: the registry, its weights, decoding images for it, the embedder and its inference engines."""
