"""Embedding classifiers: train one on a model's embeddings, serve it, check it on quantized variants.

data.py (labelled CSV / JSONL), cache.py (embeddings and model hashes under LQMF_HOME),
pipeline.py (the scikit-learn pipeline and its cross-validation), artifact.py (safe save / load:
skops with a trusted-types check, a JSON manifest), train.py, registry.py (loaded classifiers,
predict), check.py (the variant check), evalset.py (what a check scores: the held-out split or a
labelled file a person brings), results.py (what lqmf.api returns); the shell's side is
agents/classifier_parse.py and agents/classifier_commands.py.
"""
