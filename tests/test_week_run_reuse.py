"""WeekRun reuses a finished run or job only when its settings are the same.

Configs gained ``precision`` and ``deterministic`` after students had saved runs. A saved config
without such a key was made with the behaviour the key's default now names, so it must still be
reused for that default (and only for it); anything else still needs OVERWRITE.
"""

from __future__ import annotations

import json

import pytest

from medssl.course import notebook as ch
from medssl.errors import OutputExistsError
from medssl.pretrain import SSLConfig
from medssl.train import TrainConfig
from medssl.utils import to_jsonable, write_json

NEW_KEYS = ("precision", "deterministic")


def test_same_settings_fills_only_missing_keys_with_their_defaults():
    defaults = {"precision": "auto", "deterministic": False, "epochs": 5}
    new = {"epochs": 3, "precision": "auto", "deterministic": False}
    assert ch.same_settings({"epochs": 3}, new, defaults)
    assert not ch.same_settings({"epochs": 4}, new, defaults)                          # a real difference
    assert not ch.same_settings({"epochs": 3}, {**new, "precision": "fp32"}, defaults)  # not the default
    assert not ch.same_settings({"epochs": 3}, new)                                    # no defaults: exact
    assert not ch.same_settings({"epochs": 3}, {**new, "other": 1}, defaults)           # no default known
    assert not ch.same_settings({"epochs": 3, "gone": 1}, new, defaults)                # a key that went away
    assert not ch.same_settings({"epochs": 3, "precision": "fp32"}, new, defaults)      # saved value counts
    assert not ch.same_settings(None, new, defaults)


def test_config_defaults_are_the_dataclass_defaults():
    d = ch.config_defaults(TrainConfig)
    assert d["precision"] == "auto" and d["deterministic"] is False
    assert "dataset" not in d                                              # no default: never filled in
    assert d == to_jsonable(d)


@pytest.fixture
def week3(tmp_path):
    def make(**kw):
        return ch.WeekRun(3, dataset="synthetic", student="old", model="smallcnn", epochs=1, batch_size=8,
                          results_root=tmp_path / "results", smoke=False, overwrite=False, tasks=None, **kw)
    return make


def _no_training(*a, **k):
    raise AssertionError("the finished run should have been reused, not retrained")


def test_train_reuses_a_run_saved_before_the_numerics_settings(week3, monkeypatch):
    wk = week3()
    cfg = wk.train_config()
    old_config = {k: v for k, v in to_jsonable(cfg.to_dict()).items() if k not in NEW_KEYS}
    saved = {"config": old_config, "acc": 0.5, "auroc": 0.6, "ece": 0.1}
    write_json(wk.runs / "baseline" / "test_metrics.json", saved)
    monkeypatch.setattr("medssl.train.run", _no_training)
    assert wk.train("baseline") == saved
    # asking for something else than the default is a change: OVERWRITE needed
    with pytest.raises(OutputExistsError, match="other settings"):
        week3(precision="fp32").train("baseline")
    with pytest.raises(OutputExistsError, match="other settings"):
        week3(deterministic=True).train("baseline")
    # and a saved setting that differs still counts
    write_json(wk.runs / "baseline" / "test_metrics.json", {**saved, "config": {**old_config, "epochs": 2}})
    with pytest.raises(OutputExistsError, match="other settings"):
        wk.train("baseline")


def test_jobs_saved_before_the_numerics_settings_are_reused(week3):
    wk = week3()
    cfg = SSLConfig("synthetic", backbone="smallcnn", epochs=1, batch_size=8)
    old_key = {k: v for k, v in to_jsonable(cfg.to_dict()).items() if k not in NEW_KEYS}
    out = wk.runs / "ssl"
    write_json(out / "course_job.json", {"key": old_key, "finished": "earlier"})
    write_json(out / "ssl_config.json", {"status": "done"})
    assert wk.job("ssl", cfg.to_dict(), _no_training) == out                           # no defaults given
    assert wk.job("ssl", cfg.to_dict(), _no_training, ch.config_defaults(SSLConfig)) == out
    fp32 = SSLConfig("synthetic", backbone="smallcnn", epochs=1, batch_size=8, precision="fp32")
    with pytest.raises(OutputExistsError, match="other settings"):
        wk.job("ssl", fp32.to_dict(), _no_training)
    assert json.loads((out / "course_job.json").read_text())["key"] == old_key        # left as it was
