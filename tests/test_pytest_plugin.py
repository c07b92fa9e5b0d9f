"""The pytest plugin: inert until used, skips with the install hint without the extra, documented fixtures.

A fresh virtualenv without the extra is exercised in ``test_install.py``; here
the missing extra is simulated by blocking its imports in a pytester run.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)

HEAVY = ("cryptography", "numpy", "espeakng_loader", "soundfile", "amazon_polly_streaming.emulator")


def test_registering_the_plugin_imports_no_emulator_dependency(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        f"""
        import sys

        def test_unrelated(request):
            assert request.config.pluginmanager.has_plugin("polly_emulator")
            loaded = [name for name in {HEAVY!r} if name in sys.modules]
            assert loaded == []
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_fixtures_skip_with_the_install_hint_without_the_extra(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import sys

        # As if the [emulator] extra were not installed: importing these fails.
        for name in ("numpy", "cryptography"):
            sys.modules[name] = None
        """
    )
    pytester.makepyfile(
        """
        def test_unrelated():
            assert True

        def test_uses_the_emulator(polly_env):
            raise AssertionError("not reached")

        def test_uses_it_too(polly_emulator):
            raise AssertionError("not reached")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    hint = "the Polly emulator needs its extra: pip install 'amazon-polly-streaming[emulator]' (import of"
    assert result.stdout.str().count(hint) == 2


def test_both_fixtures_are_documented(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures", "-v")
    output = result.stdout.str()
    for line in (
        "polly_emulator [session scope] -- ",
        "A local Polly emulator for the whole test session",
        "polly_env -- ",
        "Point the AWS environment at the session's emulator",
        "Skipped when the ``[emulator]`` extra is not installed.",
    ):
        assert line in output
