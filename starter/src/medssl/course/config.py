"""Where the course lives: the repository root, and ``course.toml`` with the repository the course is published from."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ConfigError


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The repository root: the first folder upwards holding ``starter/src/medssl`` (else the package's)."""
    here = Path(start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "starter" / "src" / "medssl").is_dir():
            return p
    pkg = Path(__file__).resolve()  # <repo>/starter/src/medssl/course/config.py
    if len(pkg.parents) > 4 and (pkg.parents[4] / "notebooks").is_dir():
        return pkg.parents[4]
    return here


COURSE_FILE = "course.toml"          # at the repository root: the one place for the course's repository URL
REPO_URL_ENV = "MEDSSL_REPO_URL"     # overrides it in a running notebook's setup cell
PLACEHOLDER_URL = "github.com/your-org/"
_COURSE_DEFAULTS = {"repo_url": "https://github.com/your-org/medmnist-ssl", "branch": "main"}


def course_config(root: str | os.PathLike | None = None) -> dict:
    """``[course]`` of ``course.toml`` (``repo_url``, ``branch``) in the repository ``root``."""
    path = Path(root or repo_root()) / COURSE_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: the course's repository URL is set there (repo_url = \"https://...\").")
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the file is two plain key = "value" lines
        data = dict(re.findall(r'^\s*(\w+)\s*=\s*"([^"]*)"', text, re.M))
    else:
        try:
            data = tomllib.loads(text).get("course", {})
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path} is not valid TOML ({exc}).") from None
    cfg = {**_COURSE_DEFAULTS, **{k: v for k, v in data.items() if k in _COURSE_DEFAULTS}}
    for key, value in cfg.items():
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{path}: '{key}' should be a non-empty string, got {value!r}.")
    return cfg


def github_slug(url: str) -> str | None:
    """``owner/name`` of a GitHub repository URL (https or ssh form), else None."""
    m = re.fullmatch(r"(?:https?://(?:www\.)?|git@|ssh://git@)github\.com[/:]([\w.-]+)/([\w.-]+?)(?:\.git)?/?",
                     url.strip())
    return f"{m.group(1)}/{m.group(2)}" if m else None
