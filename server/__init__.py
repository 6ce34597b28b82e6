"""Hosting: discovery of models on disk, the runtime that owns loaded models, and its HTTP faces."""
