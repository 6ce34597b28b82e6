"""Layer 6, the HTTP face: the app, its routes, schemas, errors, security, streaming and metrics."""
