"""What several commands share, none of it a command itself: the output format option and emitting
(``output``), measuring a list of jobs with the executor options (``measure``), explaining skipped pairs
(``skips``), tracker options (``trackers``) and the ``py:`` models of ``run`` and ``evaluate``
(``adapted``)."""
