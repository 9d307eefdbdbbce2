"""A plugin that registers whatever a test hands it: the way tests add a model, dataset or metric
now that the registry is read-only once built."""

from __future__ import annotations

from harness import hookimpl


class Registrations:
    def __init__(self, models=(), datasets=(), metrics=(), feature_extractors=()):
        self.models, self.datasets = list(models), list(datasets)
        self.metrics, self.feature_extractors = list(metrics), list(feature_extractors)

    @hookimpl
    def harness_register_models(self, register):
        for spec in self.models:
            register(spec)

    @hookimpl
    def harness_register_datasets(self, register):
        for spec in self.datasets:
            register(spec)

    @hookimpl
    def harness_register_metrics(self, register):
        for spec in self.metrics:
            register(spec)

    @hookimpl
    def harness_register_feature_extractors(self, register):
        for spec in self.feature_extractors:
            register(spec)
