"""io.memory: the budget of one allocation whose size a file decides."""

import pytest

from cellseg_bridge.errors import InputError
from cellseg_bridge.io.memory import MEMORY_LIMIT_ENV, check_allocation, format_bytes, memory_budget


def test_budget_from_the_environment_or_the_system(monkeypatch):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1.5G")
    assert memory_budget() == int(1.5 * (1 << 30))
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "512MiB")
    assert memory_budget() == 512 << 20
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "lots")
    with pytest.raises(InputError, match=MEMORY_LIMIT_ENV):
        memory_budget()
    monkeypatch.delenv(MEMORY_LIMIT_ENV)
    assert memory_budget() is None or memory_budget() > 0


def test_check_allocation_names_what_and_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv(MEMORY_LIMIT_ENV, "1M")
    check_allocation(1 << 20, "fits")
    with pytest.raises(InputError, match=r"the label image would need 2.0 MiB, more than .*1.0 MiB") as info:
        check_allocation(2 << 20, "the label image", tmp_path / "big.tif")
    assert info.value.path == tmp_path / "big.tif"
    assert format_bytes(20 * (1 << 30)) == "20.0 GiB" and format_bytes(12) == "12 bytes"
