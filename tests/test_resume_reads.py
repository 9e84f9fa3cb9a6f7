"""Resuming reads the training state once and builds network_g once (preflight's check and compat's fixes share
what they read)."""
import sys

import torch
from helpers import tiny_options, write_yaml

from sd_plugin import preflight


def test_resume_reads_the_state_once_and_builds_network_g_once(tiny_data, tmp_path, monkeypatch):
    from sd_plugin.train import main
    opt = write_yaml(tiny_options(tiny_data, name='reads', total_iter=10), tmp_path / 'reads.yml')
    monkeypatch.setattr(sys, 'argv', ['sd-train', '-opt', opt])
    main(str(tmp_path))
    reads, builds = [], []
    load, build = torch.load, preflight.build_network
    monkeypatch.setattr(torch, 'load', lambda f, *a, **k: reads.append(str(f)) or load(f, *a, **k))
    monkeypatch.setattr(preflight, 'build_network', lambda o: builds.append(o) or build(o))
    monkeypatch.setattr(sys, 'argv', ['sd-train', '-opt', opt, '--auto_resume', '--force_yml', 'train:total_iter=20'])
    main(str(tmp_path))
    assert [r for r in reads if r.endswith('.state')] == [str(tmp_path / 'experiments' / 'reads' / 'training_states'
                                                              / '10.state')]
    assert len(builds) == 1
    assert (tmp_path / 'experiments' / 'reads' / 'training_states' / '20.state').is_file()
