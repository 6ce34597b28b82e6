"""Layer 2, the runtime: models on disk, the manager that owns loaded ones, backends, engines, endpoints."""
