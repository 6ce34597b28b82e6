"""The shell's brains (text -> intent -> action) above the work they drive: quantization/ (the factory),
measure/ (experiments), models/ (files on disk), classifiers/ (embedding classifiers), demo/ (the offline
demo models)."""
