"""Shared, session-scoped real data: a tiny synthetic CT set and its ingested dataset dir."""

import pytest

from medzoo.datasets.ingest import ingest
from medzoo.datasets.synth import write_synthetic

PATIENTS, SIZE, SLICES = 8, 48, 3


@pytest.fixture(scope="session")
def key_file(tmp_path_factory):
    return tmp_path_factory.mktemp("key") / "pseudonym.key"


@pytest.fixture(scope="session")
def synth_ct(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_ct")
    summary = write_synthetic(out, patients=PATIENTS, modality="ct", size=SIZE, slices=SLICES, seed=3)
    return out, summary


@pytest.fixture(scope="session")
def dataset(tmp_path_factory, synth_ct, key_file):
    src, summary = synth_ct
    ds = tmp_path_factory.mktemp("ds") / "DS"
    result = ingest(src, src / "labels.csv", ds, size=32, folds=4, seed=0, key_file=key_file,
                    progress=False)
    return ds, result, summary
