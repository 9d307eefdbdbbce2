"""Built-in report-format plugins: ``csv`` and ``json`` (the tidy results), ``markdown``, ``html``,
``latex`` and ``terminal``, registering the core's renderers (:mod:`harness.report`) through
``harness_register_report_formats``."""
