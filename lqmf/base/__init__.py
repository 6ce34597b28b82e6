"""Layer 0: settings, errors, names, artifacts, processes, units and the generation types every layer shares."""
