"""Embedding classifiers: train one on a model's embeddings, serve it, check it on quantized variants.

data.py (labelled CSV / JSONL), cache.py (embeddings and model hashes under LQMF_HOME),
pipeline.py (the scikit-learn pipeline and its cross-validation), artifact.py (safe save / load:
skops with a trusted-types check, a JSON manifest), train.py, registry.py (loaded classifiers,
predict), check.py (the variant check), parse.py and commands.py (the shell's side).
"""
