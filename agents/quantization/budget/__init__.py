"""Quantization to a budget: measured per-tensor sensitivities, an exact knapsack over them, a verified mix."""
