"""The profile ``snakemake --profile slurm`` finds in this checkout: ours, with the site's over it.

Snakemake looks for a profile given by name (``--profile slurm``) in the working directory
first, then in ``$XDG_CONFIG_HOME/snakemake`` (``~/.config/snakemake``) and in
``/etc/xdg/snakemake`` (the first of ``$XDG_CONFIG_DIRS``). Typed in the checkout, the name
finds ``slurm/config.yaml`` beside ``Snakefile``, a YTE template that calls
:func:`merged_profile` (run from the working directory, so only where the checkout is the
working directory). Its result is ``profiles/slurm/config.yaml`` with the profile the same name
would have found without it (the site's own ``slurm``, if there is one) applied over it:

- a key of the site's profile replaces ours, except mappings, which are merged entry by entry
  (``default-resources``, ``resources``, ``set-threads``; ``set-resources`` rule by rule and
  resource by resource), the site's entry winning;
- a rule's GPU request is one entry: where the site's ``set-resources`` asks for ``gpu``,
  ``gpu_model`` or ``gres``, ours of those three is dropped (``gpu`` and ``gres`` at once stop
  the workflow);
- the command-line form of those mappings (``default-resources: ["mem_mb=8000"]``,
  ``set-resources: ["distill:gpu=2"]``) is read as the mapping it stands for;
- a site value naming a file of the site's profile folder becomes that file's path, as
  Snakemake reads it there.

So a site whose ``slurm`` profile sets the partition and account keeps them, and the training
jobs keep asking for their GPUs; without a site profile the result is ours unchanged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["merge_profiles", "merged_profile", "read_profile", "site_profile"]

# Keys whose value is a mapping (Snakemake's profile parser accepts these as mappings).
ONE_LEVEL = (
    "set-threads",
    "resources",
    "set-scatter",
    "batch",
    "set-resource-scopes",
    "default-resources",
    "config",
    "groups",
    "group-components",
    "consider-ancient",
)
TWO_LEVEL = ("set-resources",)
# Set while a site profile is read: a site profile that merges again does not look further.
_MERGING = "ROBUSTKD_MERGING_PROFILE"
# Ways of asking SLURM for GPUs; a rule's request is one of them (robustkd.gpus).
GPU_KEYS = ("gpu", "gpu_model", "gres")


def _scalar(text: str) -> Any:
    """``"8"`` -> 8, ``"0.5"`` -> 0.5, anything else unchanged (command-line values)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _as_mapping(key: str, value: Any) -> Any:
    """The mapping a command-line style list of a mapping key stands for; else ``value``."""
    if not isinstance(value, list) or key not in ONE_LEVEL + TWO_LEVEL:
        return value
    out: dict[str, Any] = {}
    for item in value:
        name, sep, val = str(item).partition("=")
        if not sep:
            return value  # not ``name=value`` items: left to Snakemake as given
        if key in TWO_LEVEL:
            rule, sep, resource = name.partition(":")
            if not sep:
                return value
            out.setdefault(rule.strip(), {})[resource.strip()] = _scalar(val.strip())
        else:
            out[name.strip()] = _scalar(val.strip())
    return out


def read_profile(path: Path) -> dict[str, Any]:
    """Read a profile file as Snakemake does (YTE where it says ``__use_yte__: true``).

    A string value that names a file or folder of the profile's folder becomes its path, and
    the command-line form of a mapping key (a list of ``name=value``) becomes a mapping.

    Args:
        path: The profile's YAML file.

    Returns:
        Its keys and values.

    Raises:
        ValueError: The file holds no mapping.
    """
    import yte

    with open(path) as fh:
        profile = yte.process_yaml(fh, require_use_yte=True)
    if profile is None:
        return {}
    if not isinstance(profile, dict):
        raise ValueError(f"{path}: a profile must be a mapping of options")
    out: dict[str, Any] = {}
    for key, value in profile.items():
        if isinstance(value, str):
            local = path.parent / os.path.expanduser(os.path.expandvars(value))
            if local.exists():
                value = str(local)
        out[key] = _as_mapping(key, value)
    return out


def merge_profiles(ours: Mapping[str, Any], site: Mapping[str, Any]) -> dict[str, Any]:
    """``ours`` with ``site`` applied over it (the rules are in the module's docstring).

    Args:
        ours: The project's profile (:func:`read_profile`).
        site: The site's profile.

    Returns:
        The merged profile; neither input is changed.
    """
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in ours.items()}
    for key, value in site.items():
        mine = out.get(key)
        if not (isinstance(mine, dict) and isinstance(value, Mapping)):
            out[key] = value
        elif key in TWO_LEVEL:
            for rule, resources in value.items():
                entry = dict(mine.get(rule) or {})
                if isinstance(resources, Mapping):
                    if any(k in resources for k in GPU_KEYS):
                        entry = {k: v for k, v in entry.items() if k not in GPU_KEYS}
                    entry.update(resources)
                    mine[rule] = entry
                else:
                    mine[rule] = resources
        else:
            mine.update(value)
    return out


def site_profile(name: str, skip: list[Path]) -> Path | None:
    """The profile file Snakemake finds for ``--profile <name>`` outside the working directory.

    Args:
        name: The profile's name.
        skip: Profile files or folders that do not count (this checkout's own), resolved.

    Returns:
        Its YAML file, or None where neither the user's nor the site's configuration folder
        holds one (or it is one of ``skip``).
    """
    from snakemake.cli import get_profile_dir
    from snakemake.common import get_appdirs

    dirs = get_appdirs()
    for folder in (dirs.user_config_dir, dirs.site_config_dir):
        candidate = Path(folder) / name
        if not candidate.exists():
            continue
        found = get_profile_dir(str(candidate))
        if found is None:
            continue  # a folder without a profile file: Snakemake looks further too
        _, path = found
        if path.resolve() in skip or path.resolve().parent in skip:
            return None
        return path
    return None


def merged_profile(project: str = "profiles/slurm", name: str = "slurm") -> dict[str, Any]:
    """The project's profile with the site's profile of the same name over it.

    Called by ``<name>/config.yaml`` of the checkout, with the checkout as working directory;
    says on stderr which files it combined.

    Args:
        project: The project's profile folder, relative to the checkout.
        name: The profile's name (``--profile <name>``) and its folder in the checkout.

    Returns:
        The merged profile.

    Raises:
        FileNotFoundError: The working directory is not the checkout.
    """
    ours_file = Path(project, "config.yaml")
    if not ours_file.is_file():
        raise FileNotFoundError(
            f"{Path(name, 'config.yaml').resolve()} combines {ours_file} with your own "
            f"'{name}' profile and works only in the checkout: run Snakemake there, or give "
            f"--profile <checkout>/{project}"
        )
    ours = read_profile(ours_file)
    skip = [Path(name).resolve(), Path(project).resolve()]
    # A site profile that is itself such a merge (another checkout's, linked) reads as ours.
    site = None if os.environ.get(_MERGING) else site_profile(name, skip)
    if site is None:
        print(f"profile {name}: {ours_file} (no other '{name}' profile found)", file=sys.stderr)
        return ours
    print(f"profile {name}: {ours_file}, with {site} over it", file=sys.stderr)
    os.environ[_MERGING] = "1"
    try:
        return merge_profiles(ours, read_profile(site))
    finally:
        del os.environ[_MERGING]
