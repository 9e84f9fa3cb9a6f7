"""Training data that a resumed run replays exactly, and that names the file behind a load error.

BasicSR's training data are not reproducible across a resume: ``train_pipeline`` restarts the resumed epoch from its
first batch, and the random crops and flips come from the global ``random`` state of the main process (or of workers
re-seeded identically at every epoch), which a restart does not restore. Here every sample's augmentation is seeded
from (manual_seed, epoch, its position in the epoch), and the sampler can start mid-epoch. The same positions are
global across ranks, so a 2-process run sees the same samples, augmented the same way, as a 1-process run with the
same total batch. ``sd_plugin.compat.install`` installs both into ``basicsr.train``.
"""
import os
import random
import zlib

import cv2
import numpy as np
from basicsr.data.data_sampler import EnlargedSampler
from torch.utils.data import Dataset

from sd_plugin.errors import ConfigError


class ResumableSampler(EnlargedSampler):
    """EnlargedSampler whose items are ``(epoch, global_position, index)`` and which can skip the samples a resumed
    run already trained on.

    Attributes:
        resume_at (tuple[int, int]): (epoch, samples of this rank to drop from its start). Every iteration of that
            epoch skips them: BasicSR's CPUPrefetcher makes (and drops) one iterator before ``set_epoch``.
    """

    def __init__(self, dataset, num_replicas, rank, ratio=1):
        super().__init__(dataset, num_replicas, rank, ratio)
        self.resume_at = (None, 0)

    def __iter__(self):
        indices = list(super().__iter__())  # this rank's share: global positions rank, rank + world, ...
        items = [(self.epoch, pos * self.num_replicas + self.rank, index) for pos, index in enumerate(indices)]
        return iter(items[self.resume_at[1]:] if self.epoch == self.resume_at[0] else items)


class SeededDataset(Dataset):
    """Wraps a BasicSR dataset. Item ``(epoch, position, index)`` loads ``dataset[index]`` with ``random`` and
    ``numpy.random`` seeded from (seed, epoch, position); a plain ``index`` loads it unseeded. Every other
    attribute (``opt``, ``paths``, ``data_info``, ...) is the wrapped dataset's. When an item fails to load because
    one of its files is unreadable, the error is a one-line ConfigError naming that file; any other error is a bug
    and propagates unchanged.
    """

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __getattr__(self, name):  # only called for attributes not found on the wrapper itself
        if name == 'dataset':  # not set yet (unpickling in a DataLoader worker)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        if isinstance(item, tuple):
            epoch, position, index = item
            sample_seed = zlib.crc32(f'{self.seed}/{epoch}/{position}'.encode())
            random.seed(sample_seed)
            np.random.seed(sample_seed)
        else:
            index = item
        try:
            return self.dataset[index]
        except Exception as err:
            unreadable = self.unreadable_files(index)
            if not unreadable:
                raise
            raise ConfigError(f'datasets {self.opt.get("name")!r}: cannot read {", ".join(unreadable)} '
                              f'({type(err).__name__})') from None

    def unreadable_files(self, index):
        """The files of item ``index`` (BasicSR's ``paths[index]``, for a dataset read from disk) that are missing
        or that cv2 cannot read. LMDB keys are not files: nothing can be told of them here."""
        if (self.opt.get('io_backend') or {}).get('type', 'disk') != 'disk':
            return []
        paths = getattr(self.dataset, 'paths', None)
        entry = paths[index] if paths is not None and index < len(paths) else None
        files = [str(p) for p in entry.values()] if isinstance(entry, dict) else []
        return [p for p in files if not os.path.isfile(p) or cv2.imread(p, cv2.IMREAD_UNCHANGED) is None]
