"""A plugin that fails to import because a package it needs is not installed; had it loaded, it would
have registered the model ``ghost-flow`` and the dataset ``ghost-moons``."""

from harness import Capability, DataKind, DatasetSpec, LikelihoodKind, ModelSpec, hookimpl

import harness_test_package_that_is_not_installed as backend  # noqa: E402  (the failure under test)


@hookimpl
def harness_register_models(register):
    register(ModelSpec(name="ghost-flow", family="ghost", factory=backend.Flow, data_kinds=[DataKind.CONTINUOUS],
                       capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT))


@hookimpl
def harness_register_datasets(register):
    register(DatasetSpec(name="ghost-moons", kind=DataKind.CONTINUOUS, event_shape=(2,), load=backend.load))
