"""Built-in metric plugins (likelihood, samples, fidelity, speed) and the feature extractors they use."""
