"""Evaluation: the measurement protocol (``protocol``; what an output costs is ``sd_plugin.complexity``) and the
views of the records (``report``). The ``sd-eval`` command is ``sd_plugin.tools.eval``."""
