"""Built-in executor plugins: ``local``, ``process`` and ``ray``, one module each, registering the core's
executor building blocks (:mod:`harness.executors`) through ``harness_register_executors``."""
