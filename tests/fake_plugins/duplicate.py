"""A plugin that registers a model name the fakes already use."""

from harness import hookimpl

from tests.fake_plugins import fakes


@hookimpl
def harness_register_models(register):
    register(fakes._spec("stdnormal", fakes.StandardNormal))
