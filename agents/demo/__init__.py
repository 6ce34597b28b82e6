"""The offline demo model: a tiny llama trained on the Python standard library, in every format."""
