"""Data preparation: MATLAB-exact bicubic down-sampling (``bicubic.imresize``) and the ``sd-prepare`` command
(``prepare``), which writes paired HR/LR folders or LMDBs that BasicSR's ``PairedImageDataset`` reads."""
