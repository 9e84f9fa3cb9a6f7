"""Routing at inference (issue 17): each LR tile of an image gets one output of a multi-exit network (an exit or the
teacher) under a budget of multiply-accumulates, and every tile's pixels equal that output's pixels exactly.

* ``staged``: the network cut into stages: ``stem`` (input -> features before the first block), ``advance``
  (features at one depth -> a deeper one), ``head`` (features at a depth -> SR), with the halo each stage needs;
* ``scores``: what a router looks at: the ``edge`` score of an LR tile, tile statistics of the first exit's
  features, and the true per-tile gains (``oracle``, evaluation only);
* ``calibration``: the ``edge`` table and the ``learned`` regressor, fitted on training images, stored in a JSON
  file beside the checkpoint (``CKPT.routing.json``);
* ``routers``: per tile and output, the predicted gain over the cheapest exit (edge, learned, random, oracle);
* ``context``: the greedy choice by predicted gain per MAC actually run (context included) under the budget;
* ``execute``: the shared-trunk run: the trunk up to the first exit once for the whole image, then deeper only where
  tiles were routed deeper, then each tile's own head; stitched.
"""
