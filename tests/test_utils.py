"""Small helpers in medssl.utils that messages and files depend on."""

from pathlib import Path

from medssl.utils import display_path


def test_display_path_starts_at_results_wherever_the_repo_or_temp_folder_is():
    assert display_path("/tmp/abc123/results/week7/breastmnist/ci") == str(Path("results/week7/breastmnist/ci"))
    assert display_path("/home/x/course/results/week8/p/alice/") == str(Path("results/week8/p/alice"))
    # the last "results" wins: a repository that itself sits in a folder called results
    assert display_path("/srv/results/medmnist-ssl/results/week1/b/s") == str(Path("results/week1/b/s"))


def test_display_path_falls_back_to_runs_then_cwd_relative_then_as_given(tmp_path, monkeypatch):
    assert display_path("/data/runs/ssl/pneumoniamnist") == str(Path("runs/ssl/pneumoniamnist"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out" / "x").mkdir(parents=True)
    assert display_path(tmp_path / "out" / "x") == str(Path("out/x"))
    elsewhere = Path("/somewhere/else/entirely")
    assert display_path(elsewhere) == str(elsewhere)


def test_every_cli_help_names_each_default_once_and_never_none():
    import importlib
    import re

    for name in ("train", "pretrain", "probe", "efficiency", "embed", "paradigms"):
        parser = importlib.import_module(f"medssl.{name}").build_parser()
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        for p in [parser, *(sp for a in subs for sp in a.choices.values())]:
            flat = " ".join(p.format_help().split())
            assert "(default: None)" not in flat, name
            assert re.search(r"\(default[^()]*\) \(default", flat) is None, name
            for action in p._actions:  # every option with a real default shows it, help text or not
                if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
                    fmt = p._get_formatter()
                    fmt.add_argument(action)
                    assert f"default: {action.default}" in " ".join(fmt.format_help().split()), \
                        (name, action.option_strings)
