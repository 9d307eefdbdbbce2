"""Built-in model families, one plugin module (or package) each."""
