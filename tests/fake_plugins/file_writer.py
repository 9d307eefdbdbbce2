"""A fake model whose fit leaves a file where a job's artifacts go, for the test of files travelling
back from a node that does not share the run directory: ``$HARNESS_TEST_RUN_DIR/artifacts/
$HARNESS_TEST_ARTIFACT_FOLDER/note.txt`` (load with tests.fake_plugins.fakes, whose ``tiny`` dataset it uses)."""

from __future__ import annotations

import os
from pathlib import Path

from harness import Capability, DataKind, LikelihoodKind, ModelSpec, hookimpl
from tests.fake_plugins.fakes import StandardNormal


class LeavesAFile(StandardNormal):
    def fit(self, train, val, ctx):
        folder = Path(os.environ["HARNESS_TEST_RUN_DIR"]) / "artifacts" / os.environ["HARNESS_TEST_ARTIFACT_FOLDER"]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "note.txt").write_text(f"fitted with seed {ctx.seed}")
        super().fit(train, val, ctx)


@hookimpl
def harness_register_models(register):
    register(ModelSpec(name="leaves-a-file", family="fake", factory=LeavesAFile, data_kinds=[DataKind.CONTINUOUS],
                       capabilities=[Capability.SAMPLE], likelihood=LikelihoodKind.EXACT, default_datasets=["tiny"]))
