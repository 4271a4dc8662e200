"""Training from a genotype file: the network keys come from the file's provenance
(config_checks.resolve_genotype_config); explicit contradictions are refused."""

import json

import pytest

from experiments.configs import base, train
from rldarts.model.genotypes import CellGenotype, NetworkGenotype, Provenance
from rldarts.run import config_checks, setup

CELL = CellGenotype(nodes=(((0, "Relu"),), ((0, "SkipConnection"), (1, "Tanh"))))
# A cpu_demo search on darts_impala: every key differs from the smoke train preset's.
FOUND = Provenance(
    method="darts",
    network="darts_impala",
    search_space="rl_darts_default",
    num_nodes=2,
    output_mode="sum",
    first_conv=False,
    depths=(8, 16),
    dense=64,
)


@pytest.fixture
def genotype_file(tmp_path):
    path = tmp_path / "genotype.json"
    path.write_text(NetworkGenotype({"normal": CELL}, found_with=FOUND).to_json())
    return str(path)


def _net(c):
    return (
        c.network,
        c.net.search_space,
        c.net.num_nodes,
        c.net.output_mode,
        c.net.first_conv,
        tuple(c.net.depths),
        c.net.dense,
    )


def test_network_keys_come_from_the_file(genotype_file):
    c = train.get_config("smoke")
    c.genotype = genotype_file
    r = config_checks.resolve_genotype_config(c)
    assert _net(r) == ("darts_impala", "rl_darts_default", 2, "sum", False, (8, 16), 64)
    assert "without_genotype" not in r and c.network is None  # c itself unchanged
    config_checks.validate(r)
    s = setup.build(c, require_supernet=False)
    assert _net(s.config) == _net(r) and s.alphas == {}
    torso = s.agent.model.torso
    assert type(torso).__name__ == "DartsImpalaCNN" and torso.depths == (8, 16)
    assert torso.output_mode == "sum" and torso.genotype.found_with == FOUND


def test_without_genotype_train_is_impala_at_preset_widths():
    for preset in ("smoke", "cpu_demo"):
        before = base.build(preset, network="impala")  # what train.py gave before
        before.arch.mode = "frozen"
        r = config_checks.resolve_genotype_config(train.get_config(preset))
        assert r.to_dict() == before.to_dict()  # same fingerprint: old runs resume
    c = train.get_config("smoke")
    c.net.depths = (2, 4)
    assert tuple(config_checks.resolve_genotype_config(c).net.depths) == (2, 4)


@pytest.mark.parametrize(
    "key,value,recorded",
    [
        ("network", "darts_standard", "darts_impala"),
        ("network", "impala", "darts_impala"),
        ("net.search_space", "conv3x3_only", "rl_darts_default"),
        ("net.num_nodes", 3, 2),
        ("net.output_mode", "concat_conv", "sum"),
    ],
)
def test_explicit_contradiction_is_one_line(genotype_file, key, value, recorded):
    c = train.get_config("smoke")
    c.genotype = genotype_file
    section, leaf = (c.net, key[4:]) if key.startswith("net.") else (c, key)
    section[leaf] = value
    with pytest.raises(ValueError) as err:
        setup.build(c, require_supernet=False)
    assert str(err.value) == (
        f"config {key}={value!r} contradicts genotype {genotype_file} (found with "
        f"{key}={recorded!r}); drop --config.{key} or use a matching genotype"
    )


def test_explicit_agreeing_keys_and_widths(genotype_file):
    c = train.get_config("smoke")
    c.genotype = genotype_file
    c.network = "darts_impala"  # agrees with the file
    c.net.depths, c.net.dense, c.net.first_conv = (16, 32), 128, True  # a wider network
    r = config_checks.resolve_genotype_config(c)
    assert _net(r) == ("darts_impala", "rl_darts_default", 2, "sum", True, (16, 32), 128)
    # A fully set config (base presets, in-process use) is checked the same way.
    full = base.build("cpu_demo", network="darts_impala", genotype=genotype_file)
    full.net.output_mode = "sum"
    assert _net(config_checks.resolve_genotype_config(full)) == _net(full)


def test_format_1_file_needs_an_explicit_network(tmp_path):
    path = tmp_path / "old.json"
    cells = {"normal": CELL.to_dict(), "reduction": CELL.to_dict()}
    path.write_text(json.dumps({"format_version": 1, "cells": cells}))
    c = train.get_config("smoke")
    c.genotype = str(path)
    with pytest.raises(
        ValueError,
        match="needs a DARTS network .*; set network to one of "
        "darts_impala, darts_standard, darts_minatar, darts_dmc$",
    ):
        config_checks.resolve_genotype_config(c)
    c.network = "darts_standard"  # as before: the preset's net keys
    r = config_checks.resolve_genotype_config(c)
    assert _net(r) == ("darts_standard", "conv3x3_only", 2, "concat_conv", True, (4, 8), 32)
    c.network = "impala"
    with pytest.raises(
        ValueError,
        match="needs a DARTS network; set network to one of darts_impala, darts_standard",
    ):
        setup.build(c, require_supernet=False)


def test_search_configs_are_unaffected():
    c = base.build("smoke", network="darts_standard")
    r = config_checks.resolve_genotype_config(c)
    assert r.to_dict() == c.to_dict()
    c.network = None
    with pytest.raises(ValueError, match="config network is unset"):
        config_checks.resolve_genotype_config(c)
