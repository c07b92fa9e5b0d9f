"""The region of a client created without one, found the way boto3 finds it.

Order: the explicit argument, ``AWS_REGION``, ``AWS_DEFAULT_REGION``, the
``region`` of the active profile in the shared config file, then
``eu-central-1`` as release 1.1.0 did.

The config file is read with :mod:`configparser` (as botocore itself does in
``botocore/configloader.py``), not through botocore, so that a client with no
region costs a small file read rather than botocore's import. Nothing here
runs on import, and the file is only read when neither the argument nor the
environment names a region.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["DEFAULT_REGION", "active_profile", "config_file_path", "resolve_region"]

#: The region of a client when nothing names one, as in release 1.1.0.
DEFAULT_REGION = "eu-central-1"


def resolve_region(explicit: str | None, environ: Mapping[str, str]) -> str:
    """The region to use: ``explicit`` if given, else the environment, the profile, the default.

    Empty environment variables and an empty ``region =`` count as unset.
    Raises ``ValueError`` for a config file that exists but cannot be parsed
    (botocore refuses it too, with ``ConfigParseError``).
    """
    if explicit is not None:
        return explicit
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        value = environ.get(name)
        if value:
            return value
    return profile_region(environ) or DEFAULT_REGION


def active_profile(environ: Mapping[str, str]) -> str:
    """The profile botocore would use: ``AWS_DEFAULT_PROFILE``, then ``AWS_PROFILE``, then ``default``.

    The order is botocore's (``botocore/configprovider.py``: ``'profile': (None,
    ['AWS_DEFAULT_PROFILE', 'AWS_PROFILE'], ...)``, the first one set wins), so
    the region comes from the same profile as the credentials.
    """
    return environ.get("AWS_DEFAULT_PROFILE") or environ.get("AWS_PROFILE") or "default"


def config_file_path(environ: Mapping[str, str]) -> str:
    """``AWS_CONFIG_FILE`` or ``~/.aws/config``, with ``~`` and ``$VARS`` expanded as botocore does."""
    path = environ.get("AWS_CONFIG_FILE") or os.path.join("~", ".aws", "config")
    path = os.path.expandvars(path)
    if path == "~" or path.startswith("~" + os.sep):
        home = environ.get("HOME") or os.path.expanduser("~")
        path = home + path[1:]
    return os.path.expanduser(path)


def profile_region(environ: Mapping[str, str]) -> str | None:
    """The ``region`` of the active profile in the shared config file, or None."""
    path = config_file_path(environ)
    if not os.path.isfile(path):
        return None
    import configparser

    parser = configparser.RawConfigParser()
    try:
        with open(path, encoding="utf-8") as config:
            parser.read_file(config)
    except OSError:
        return None  # unreadable: botocore's RawConfigParser.read() skips it the same way
    except (configparser.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot parse the AWS config file {path}: {exc}") from None
    wanted = active_profile(environ)
    region: str | None = None
    for section in parser.sections():
        # As botocore's build_profile_map: a later section of the same
        # profile replaces an earlier one whole.
        if _profile_name(section) == wanted:
            region = parser.get(section, "region", fallback=None) or None
    return region


def _profile_name(section: str) -> str | None:
    """The profile a section defines: ``[default]``, ``[profile NAME]`` (or ``[profile "NAME"]``)."""
    if section == "default":
        return "default"
    if not section.startswith("profile"):
        return None
    import shlex

    try:
        parts = shlex.split(section)
    except ValueError:
        return None
    return parts[1] if len(parts) == 2 else None
