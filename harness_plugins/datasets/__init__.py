"""Built-in dataset plugins: 2-D toys with true densities, packaged image sets, user-supplied files."""
